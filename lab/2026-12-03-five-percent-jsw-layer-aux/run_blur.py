"""Arm (c3B): (c3) on JSW with blur-carrying families (``Synthesizer(carry_blur=True)``) (CPU).

The meter diagnostic (``diag_meter.py``) found that whole-pixel families read ~0.015 mm wider
than labelled after a closing move, with true layers as with the LSN's: a sharp bone's blur
skirt outside its edge stays in the soft layer when the bone moves. ``carry_blur`` blurs the
layers by each image's fitted σ before the residual is split, so each bone takes its skirt.
Everything else is the committed (c3): config, data, seeds, small-fov LSN, 4500 steps, trainer.

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-jsw-layer-aux/run_blur.py OUT_DIR SEED [render]

``render``: arm (c3R) instead, no texture carry at all: the LSN's layers, moved, through a newly
drawn detector (``FivePercentConfig.synthesis="render"``'s synthesizer), which the meter read
without the closing-move offset (``meter_s1_lsn-render.md``).
"""
import os
import sys
import time

import torch

import lsn_fast as lf
from lsn_fast.tasks.experiment import Synthesizer, _evaluate, _write_csv, experiment_data

from _shared import WEIGHTS, longer  # noqa: E402  (this folder; on sys.path when run as a script)
ARM = "5% + LSN synth (blur carried) + aug (mixed)"

if __name__ == "__main__":
    out, seed = sys.argv[1], int(sys.argv[2])
    render = len(sys.argv) > 3 and sys.argv[3] == "render"
    if render:
        ARM = "5% + LSN synth (rendered, no carry) + aug (mixed)"
    torch.set_num_threads(1)
    cfg = longer.config(4500)
    t = time.perf_counter()
    train, test, order, n_low = experiment_data(cfg, seed)  # as longer.seed_state, but carry_blur
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(WEIGHTS), spacing_mm=cfg.spacing_mm)
    synth = (Synthesizer(bank, train["jsw"][low], cfg, moves=cfg.moves, bone=cfg.bone) if render else
             Synthesizer(bank, train["jsw"][low], cfg, images=train["base"][low], moves=cfg.moves, bone=cfg.bone,
                         carry_blur=True))
    st = {"train": train, "test": test, "order": order, "low": low, "synth": synth}
    print(f"[seed {seed}] data + separation {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    m = longer.train_arm(cfg, seed, st, "jsw", longer.ARM_C3)
    met, pred = _evaluate("jsw", m, test, cfg)
    r = longer.row(seed, "jsw", ARM, cfg.steps, met, time.perf_counter() - t)
    print(f"[seed {seed}] jsw {ARM} @ {cfg.steps} steps: MAE {met['mae']:.4f} mm, bias {met['bias']:+.4f} "
          f"({r['seconds']:.0f} s)", flush=True)
    os.makedirs(out, exist_ok=True)
    _write_csv(os.path.join(out, f"raw_{'c3r' if render else 'c3b'}_s{seed}.csv"), [r])
