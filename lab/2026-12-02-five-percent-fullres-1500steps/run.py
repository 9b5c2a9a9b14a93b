"""Five-percent at full resolution with the issue's 1500 optimizer steps per arm (CPU).

The centred-families configuration of ``../2026-12-02-five-percent-fullres-centred-guarded/``
(128² px at 0.1 mm, 2000 labelled, 400 test, fractions 5 % and 100 %, batch 24, ``bone="both"``,
``moves="integer"``, texture carry), with ``steps=1500`` instead of 400 and without arm (e)
(``unlabelled=False``, to fit the CPU time). 2 seeds in 2 processes. Run from the repository root:

    OMP_NUM_THREADS=1 python lab/2026-12-02-five-percent-fullres-1500steps/run.py [OUT_DIR]
"""
import os
import sys

import torch

from lsn_fast.tasks.experiment import FivePercentConfig, run_five_percent


def main():
    torch.set_num_threads(1)
    cfg = FivePercentConfig(synthesis="carry", fractions=(0.05, 1.0), steps=1500, batch_size=24, realism_n=200, realism_steps=150,
                            bone="both", moves="integer", unlabelled=False)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    run_five_percent(config=cfg, seeds=(0, 1), out_dir=out, jobs=int(os.environ.get("JOBS", 2)))


if __name__ == "__main__":
    main()
