"""Arm (e) for the 1500-step full-resolution run (CPU): 5 % of the labels + LSN families made
from *every* training image, labelled by the JSW measured on the separated layers (calibrated
on the labelled 5 %), mixed half and half with the labelled 5 %.

``../2026-12-02-five-percent-fullres-1500steps/`` left it out to fit the CPU time. This script
trains it with that run's config, data and seeds, exactly as ``run_five_percent`` would have
(the same bank, labels, mixing, trainers and task order). One seed per process:

    OMP_NUM_THREADS=1 python lab/2026-12-02-five-percent-fullres-fractions-and-e/run_e.py SEED OUT_DIR
"""
import os
import time

import lsn_fast as lf
from lsn_fast.tasks._common import mixed_source, tensor_source
from lsn_fast.tasks.experiment import _evaluate, _real_data, _synth_fn, _train_task, _unlabelled_synthesizer, _write_csv
from run import metric_row, setup

ARM = "5% labels + all images, LSN-measured synth (mixed)"  # the experiment's own row name


def main():
    t0 = time.perf_counter()
    seed, out, cfg, (train, test, order, n_low) = setup()
    low = order[:n_low]
    unlab, fit = _unlabelled_synthesizer(train, order, n_low, lf.LSN.pretrained().eval(), cfg)
    print(f"[seed {seed}] data + separation of all {cfg.n_train} images {time.perf_counter() - t0:.0f} s; labels = "
          f"{fit[0]:+.4f} + {fit[1]:.4f}·measured, measured-label MAE on the unlabelled {fit[2]:.4f} mm", flush=True)
    rows = []
    for task in ("jsw", "jsn", "svdh"):
        t = time.perf_counter()
        real_low = tensor_source(*_real_data(task, train, low))
        m = _train_task(task, mixed_source(real_low, _synth_fn(task, unlab), cfg.synth_frac), cfg, seed)
        met, _ = _evaluate(task, m, test, cfg)
        rows.append(metric_row(seed, task, ARM, met, label_mae_unlabelled_mm=fit[2]))
        print(f"[seed {seed}] {task} (e): {met.get('mae', met.get('accuracy')):.4f} ({time.perf_counter() - t:.0f} s)",
              flush=True)
        _write_csv(os.path.join(out, f"raw_e_seed{seed}.csv"), rows)


if __name__ == "__main__":
    main()
