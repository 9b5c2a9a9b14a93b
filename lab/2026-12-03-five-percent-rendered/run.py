"""Arm (c3R) on every task: (c3) with rendered LSN families (``FivePercentConfig.synthesis="render"``),
and the realism critic on the families each synthesis makes (CPU).

``../2026-12-03-five-percent-jsw-layer-aux/`` found that texture-carrying families read ~0.015 mm
wide after closing moves (the carried residual keeps the bone's blur skirt where the bone was) and
that rendering the LSN's layers through a newly drawn detector instead takes (c3) on JSW from
1.17x (a) to 1.04x on seeds 0/1. This folder asks the rest: seed 2 on JSW, JSN on three seeds, and
whether rendered small-fov families pass the realism check (<= 0.6). Everything else is the
committed (c3): config, data, seeds, small-fov LSN, 4500 steps, trainer
(``../2026-12-03-five-percent-longer/run.py``).

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-rendered/run.py task TASK SEED OUT_DIR
    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-rendered/run.py realism SEED OUT_DIR

``task`` trains (c3R) on ``jsw`` / ``jsn`` / ``svdh`` and writes ``raw_TASK_sSEED.csv``; with a
trailing ``--arm a|b|d|c1|c2`` it trains arm (a) (100 % real), (b) (the 5 % alone), (d) (the 5 % with
naive augmentation), (c1) (rendered families, mixed, no augmentation) or (c2) (pre-training on the
rendered families, then fine-tuning on the 5 %) instead; ``--arm f10|f25|f50`` trains on the first
10 / 25 / 50 % of the labelled pool (the label-fraction curve) (``raw_TASK_ARM_sSEED.csv``).
``realism`` scores the experiment's critic (its split, budget and pool) on carried and rendered
small-fov families and on the positive control, and writes ``realism_sSEED.csv``.
"""
import dataclasses
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "2026-12-03-five-percent-jsw-layer-aux"))
import lsn_fast as lf  # noqa: E402
from lsn_fast.tasks.experiment import Synthesizer, _evaluate, _realism, _realism_control, _write_csv  # noqa: E402

from _shared import WEIGHTS, longer  # noqa: E402

ARM = "5% + LSN synth (rendered, no carry) + aug (mixed)"
# --arm: the runner's arm trained (the controls, or (c3) on the rendered families) and its row name
ARMS = {"a": (longer.ARM_A, longer.ARM_A), "b": (longer.ARM_B, longer.ARM_B), "d": (longer.ARM_D, longer.ARM_D),
        "c1": (longer.ARM_C1, longer.ARM_C1), "c2": (longer.ARM_C2, longer.ARM_C2), "c3r": (longer.ARM_C3, ARM),
        **{f"f{p}": (f"real {p}%", f"real {p}%") for p in (10, 25, 50)}}  # the label-fraction curve


def config(synthesis: str):
    return dataclasses.replace(longer.config(4500), synthesis=synthesis)


def task(name: str, seed: int, out: str, arm: str = "c3r") -> None:
    cfg = config("render")
    t = time.perf_counter()
    st = longer.seed_state(cfg, seed, lf.LSN.pretrained(WEIGHTS))
    assert not st["synth"].carries_texture
    print(f"[seed {seed}] data + separation {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    trained, row_name = ARMS[arm]
    m = longer.train_arm(cfg, seed, st, name, trained)
    met, _ = _evaluate(name, m, st["test"], cfg)
    r = longer.row(seed, name, row_name, cfg.steps, met, time.perf_counter() - t)
    main = "accuracy" if name == "svdh" else "mae"
    print(f"[seed {seed}] {name} {row_name} @ {cfg.steps} steps: {main} {met[main]:.4f}"
          + (f", bias {met['bias']:+.4f}" if "bias" in met else "") + f" ({r['seconds']:.0f} s)", flush=True)
    _write_csv(os.path.join(out, f"raw_{name}{'' if arm == 'c3r' else '_' + arm}_s{seed}.csv"), [r])


def realism(seed: int, out: str) -> None:
    cfg = config("carry")
    t = time.perf_counter()
    st = longer.seed_state(cfg, seed, lf.LSN.pretrained(WEIGHTS))  # carried families, as (c3)
    carried = st["synth"]
    low, train = st["low"], st["train"]
    # the same separated layers through a new detector, as the (c3R) arm's families
    rendered = Synthesizer(st["bank"], train["jsw"][low], cfg, moves=cfg.moves, bone=cfg.bone)
    pool = st["order"][len(low):][: cfg.realism_n]  # the experiment's pool: unlabelled training images
    real = train["base"][pool]
    res = {"seed": seed, "lsn_carry": _realism(real, carried, cfg, seed),
           "lsn_rendered": _realism(real, rendered, cfg, seed), "control": _realism_control(real, cfg, seed),
           "seconds": round(time.perf_counter() - t, 1)}
    print(f"[seed {seed}] realism: " + ", ".join(f"{k} {v}" for k, v in res.items()), flush=True)
    _write_csv(os.path.join(out, f"realism_s{seed}.csv"), [res])


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "task":
        os.makedirs(sys.argv[4], exist_ok=True)
        arm = sys.argv[sys.argv.index("--arm") + 1] if "--arm" in sys.argv else "c3r"
        if arm not in ARMS:
            sys.exit(f"--arm: expected one of {list(ARMS)}, got {arm!r}")
        task(sys.argv[2], int(sys.argv[3]), sys.argv[4], arm)
    elif sys.argv[1] == "realism":
        os.makedirs(sys.argv[3], exist_ok=True)
        realism(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)
