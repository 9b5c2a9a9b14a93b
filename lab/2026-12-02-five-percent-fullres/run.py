"""Five-percent at the full config's resolution (128² px at 0.1 mm, 2000 labelled), 400 steps per arm,
fractions 5 % and 100 % only, 2 seeds in 2 processes. Run from the repository root:

    OMP_NUM_THREADS=1 python lab/2026-12-02-five-percent-fullres/run.py [OUT_DIR [BONE [MOVES]]]

OUT_DIR defaults to this folder; the rerun with the JSN collapse guard wrote to ``guarded/``.
BONE (``FivePercentConfig.bone``, default ``upper``) and MOVES (``FivePercentConfig.moves``,
default ``linear``): ``both integer`` keeps the gap centred with whole-pixel moves
(``../2026-12-02-five-percent-fullres-centred/``). ``JOBS=1`` runs the seeds one after the other
(same rows).
"""
import os
import sys

import torch

from lsn_fast.tasks.experiment import FivePercentConfig, run_five_percent


def main():
    torch.set_num_threads(1)
    bone = sys.argv[2] if len(sys.argv) > 2 else "upper"
    moves = sys.argv[3] if len(sys.argv) > 3 else "linear"
    cfg = FivePercentConfig(fractions=(0.05, 1.0), steps=400, batch_size=24, realism_n=200, realism_steps=150, bone=bone,
                            moves=moves)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    run_five_percent(config=cfg, seeds=(0, 1), out_dir=out, jobs=int(os.environ.get("JOBS", 2)))


if __name__ == "__main__":
    main()
