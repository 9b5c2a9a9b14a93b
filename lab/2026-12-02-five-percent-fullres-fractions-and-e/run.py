"""The real-labels-only arms at 10, 25 and 50 % for the 1500-step full-resolution run (CPU).

``../2026-12-02-five-percent-fullres-1500steps/`` ran fractions 5 % and 100 % only. This script
trains the missing points of the "error vs fraction of labels" curve with exactly that run's
config, data and seeds (``experiment_data``, the same nested labelled subsets and trainers), so
its rows sit on the same curve. It also re-trains the cheapest committed arm (SvdH, real 5 %) as
a check that the protocol reproduces the committed numbers. One seed per process:

    OMP_NUM_THREADS=1 python lab/2026-12-02-five-percent-fullres-fractions-and-e/run.py SEED OUT_DIR

then ``merge.py OUT_DIR`` combines the rows with the committed ``raw.csv`` into tables and plots.
"""
import os
import sys
import time

import torch

from lsn_fast.tasks.experiment import (FivePercentConfig, _evaluate, _real_data, _train_task, _write_csv,
                                       experiment_data)

HERE = os.path.dirname(os.path.abspath(__file__))
FRACTIONS = (0.1, 0.25, 0.5)


def config() -> FivePercentConfig:
    # identical to ../2026-12-02-five-percent-fullres-1500steps/run.py
    return FivePercentConfig(synthesis="carry", fractions=(0.05, 1.0), steps=1500, batch_size=24, realism_n=200, realism_steps=150,
                             bone="both", moves="integer", unlabelled=False)


def setup():
    """``(seed, out, cfg, (train, test, order, n_low))`` from ``argv = SEED OUT_DIR``, on one thread;
    shared with ``run_e.py``."""
    torch.set_num_threads(1)
    seed, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    cfg = config()
    return seed, out, cfg, experiment_data(cfg, seed)


def metric_row(seed: int, task: str, arm: str, metrics: dict, **extra) -> dict:
    """One ``raw.csv`` row as the experiment writes it (the confusion matrix left out)."""
    row = {"seed": seed, "task": task, "arm": arm, **extra}
    row.update({k: v for k, v in metrics.items() if k != "confusion"})
    return row


def main():
    t0 = time.perf_counter()
    seed, out, cfg, (train, test, order, n_low) = setup()
    print(f"[seed {seed}] data {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    jobs = [("svdh", cfg.low_fraction)] + [(task, f) for task in ("jsw", "jsn", "svdh") for f in FRACTIONS]
    for task, f in jobs:
        t = time.perf_counter()
        n = max(2, int(round(f * cfg.n_train)))
        m = _train_task(task, _real_data(task, train, order[:n]), cfg, seed)
        met, _ = _evaluate(task, m, test, cfg)
        rows.append(metric_row(seed, task, f"real {100 * f:g}%", met))
        main_metric = met.get("mae", met.get("accuracy"))
        print(f"[seed {seed}] {task} real {100 * f:g}% ({n} images): {main_metric:.4f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        _write_csv(os.path.join(out, f"raw_seed{seed}.csv"), rows)


if __name__ == "__main__":
    main()
