"""Arm (c3L): (c3) on JSW plus layer supervision from the synthesized families (CPU).

(c3) trains the JSW regressor on 5 % of the labels mixed with LSN-synthesized families and naive
augmentation. A synthesized image comes with the layers it was composed from; real images do not.
(c3L) is (c3) with one change: an auxiliary head on the regressor's encoder predicts the upper
and lower bone layers (block-averaged, see ``lsn_fast.tasks.jsw_regression.layer_targets``) on
the synthesized rows, weight ``--weight``. The head is dropped at inference: the JSW prediction
is the same network as in (a) and (c3). Config, data, seeds, LSN (small-fov), steps and trainer
are those of ``../2026-12-03-five-percent-longer/run.py`` (the committed (a)/(c3) rows).

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-jsw-layer-aux/run.py STEPS OUT_DIR \
        [--weight W] [--seeds 0 1]
"""
import argparse
import os
import sys
import time

import torch

import lsn_fast as lf
from lsn_fast.tasks._common import mixed_source, naive_augment, tensor_source
from lsn_fast.tasks.experiment import _evaluate, _real_data, _write_csv
from lsn_fast.tasks.jsw_regression import train_jsw_regressor, without_layers

from _shared import WEIGHTS, longer  # noqa: E402  (this folder; on sys.path when run as a script)

ARM = "5% + LSN synth + aug + layer supervision (mixed)"


def train_c3l(cfg, seed, st, weight, log_every=0):
    train = st["train"]
    real_low = without_layers(tensor_source(*_real_data("jsw", train, st["low"])))
    mixed = mixed_source(real_low, st["synth"].jsw_layer_batch, cfg.synth_frac)
    hist = []
    if log_every:  # wrap the loss to print its two parts now and then (pilot runs)
        import lsn_fast.tasks.jsw_regression as jr

        inner = jr._layer_loss

        def logged(w):
            f = inner(w)

            def loss(model, batch):
                v = f(model, batch)
                hist.append(float(v))
                if len(hist) % log_every == 0:
                    with torch.no_grad():
                        main = jr._loss(model, batch)
                    print(f"  step {len(hist)}: total {v:.4f}  jsw {float(main):.4f}", flush=True)
                return v

            return loss

        jr._layer_loss = logged
    return train_jsw_regressor(source=mixed, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed,
                               augment=naive_augment(dense=True), device=cfg.device, layer_weight=weight)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("steps", type=int)
    ap.add_argument("out")
    ap.add_argument("--weight", type=float, default=1.0, help="layer-loss weight")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--log-every", type=int, default=0, help="print the loss every N steps (pilot)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = longer.config(a.steps)
    lsn = lf.LSN.pretrained(WEIGHTS)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for seed in a.seeds:
        t = time.perf_counter()
        st = longer.seed_state(cfg, seed, lsn)
        print(f"[seed {seed}] data + separation {time.perf_counter() - t:.0f} s", flush=True)
        t = time.perf_counter()
        m = train_c3l(cfg, seed, st, a.weight, a.log_every)
        met, _ = _evaluate("jsw", m, st["test"], cfg)
        r = longer.row(seed, "jsw", ARM, cfg.steps, met, time.perf_counter() - t)
        r["layer_weight"] = a.weight
        rows.append(r)
        print(f"[seed {seed}] jsw {ARM} @ {cfg.steps} steps, weight {a.weight}: MAE {met['mae']:.4f} mm "
              f"({r['seconds']:.0f} s)", flush=True)
        _write_csv(os.path.join(a.out, "raw.csv"), rows)


if __name__ == "__main__":
    sys.exit(main())
