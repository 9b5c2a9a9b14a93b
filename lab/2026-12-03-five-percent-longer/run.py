"""Does a longer schedule close the (c)–(a) gap? Arms (a) and (c3) at more optimizer steps (CPU).

``../2026-12-02-five-percent-fullres-1500steps/`` ran every arm at the issue's 1500 steps: best (c)
(c3: LSN families + naive augmentation, mixed) reached JSW 0.022 / JSN 0.017 mm against (a)'s
0.017 / 0.015. From 400 to 1500 steps the JSW ratio (c3)/(a) fell from 1.37 to 1.29. Synthesized
families are unlimited, (a)'s 2000 real joints are not, so (c3) might keep gaining after (a) has
seen its data many times. This script trains only the two arms that question needs, with that
run's config, data, seeds, trainers and LSN weights (v6, the weights that run used), at ``STEPS``:

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-longer/run.py STEPS OUT_DIR [LSN_WEIGHTS] [--arms a,c3] [--tasks jsw,jsn] [--seeds 0 1]

Jobs run JSW for both seeds first, then JSN (or the ``--tasks`` order), writing ``OUT_DIR/raw.csv``
after each arm. ``--arms c3`` trains only (c3): (a) never touches the LSN, so a run that only swaps
the LSN weights can reuse (a)'s rows.
``--check`` instead runs the tiny config through this script and through ``run_five_percent``, with
carried and with rendered families, and asserts that the rows of (a), real 50 %, (b), (d), (c1), (c2) and (c3)
agree on all three tasks, so this script's arms are the experiment's arms (~1 min).
"""
import os
import sys
import time

import torch

import lsn_fast as lf
from lsn_fast.tasks._common import mixed_source, naive_augment, tensor_source
from lsn_fast.tasks.experiment import (DEFAULT_LSN, FivePercentConfig, Synthesizer, _evaluate, _real_data, _synth_fn,
                                       _train_task, _write_csv, experiment_data, run_five_percent)

ARM_A, ARM_C3 = "real 100%", "5% + LSN synth + aug (mixed)"
ARM_B, ARM_D = "real 5%", "5% + naive aug"  # the controls, named as in the experiment's tables
# (c1) the mixed batches without the augmentation; (c2) the paper's recipe: synthetic pre-training,
# then fine-tuning on the 5 % (steps // 2 at lr / 3, seed + 1), as the experiment trains them
ARM_C1, ARM_C2 = "5% + LSN synth (mixed)", "5% + LSN synth (pretrain→finetune)"
SEEDS = (0, 1)


def config(steps: int) -> FivePercentConfig:
    # identical to ../2026-12-02-five-percent-fullres-1500steps/run.py but for the steps; "carry"
    # was the default synthesis when these runs were made (render since 2026-12-03)
    return FivePercentConfig(synthesis="carry", fractions=(0.05, 1.0), steps=steps, batch_size=24, realism_n=200,
                             realism_steps=150, bone="both", moves="integer", unlabelled=False)


def seed_state(cfg: FivePercentConfig, seed: int, lsn) -> dict:
    """One seed's data, its separated 5 % (``bank``) and its (c) family source, built as
    ``_one_seed`` builds them."""
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)
    carry = train["base"][low] if cfg.synthesis == "carry" else None
    synth = Synthesizer(bank, train["jsw"][low], cfg, images=carry, moves=cfg.moves, bone=cfg.bone)
    return {"train": train, "test": test, "order": order, "low": low, "bank": bank, "synth": synth}


def train_arm(cfg, seed, st, task, arm):
    train = st["train"]
    if arm in (ARM_B, ARM_D):  # the 5 % alone; (d) with the naive augmentation (c3) uses too
        aug = naive_augment(pair=(task == "jsn")) if arm == ARM_D else None
        return _train_task(task, _real_data(task, train, st["low"]), cfg, seed, augment=aug)
    if arm.startswith("real ") and arm.endswith("%"):
        # (a) "real 100%" and the label-fraction curve ("real 10%"): the first f·n_train of the
        # seed's order, as the experiment trains its fractions
        n = max(2, int(round(float(arm[5:-1]) / 100 * cfg.n_train)))
        return _train_task(task, _real_data(task, train, st["order"][:n]), cfg, seed)
    real_low = tensor_source(*_real_data(task, train, st["low"]))
    if arm == ARM_C2:
        m = _train_task(task, _synth_fn(task, st["synth"]), cfg, seed)
        return _train_task(task, real_low, cfg, seed + 1, model=m, steps=max(1, cfg.steps // 2), lr=cfg.lr / 3)
    mixed = mixed_source(real_low, _synth_fn(task, st["synth"]), cfg.synth_frac)
    if arm == ARM_C1:
        return _train_task(task, mixed, cfg, seed)
    assert arm == ARM_C3, arm
    return _train_task(task, mixed, cfg, seed, augment=naive_augment(pair=(task == "jsn")))


def row(seed, task, arm, steps, metrics, seconds):
    return {"seed": seed, "task": task, "arm": arm, "steps": steps, "seconds": round(seconds, 1),
            **{k: v for k, v in metrics.items() if k != "confusion"}}


def run(steps: int, out: str, weights: str | None, seeds=SEEDS, tasks=("jsw", "jsn"), cfg=None, log=print,
        arms=(ARM_A, ARM_C3)) -> list:
    torch.set_num_threads(1)
    cfg = cfg or config(steps)
    lsn = lf.LSN.pretrained(weights) if weights else lf.LSN.pretrained()
    os.makedirs(out, exist_ok=True)
    states, rows = {}, []
    for task in tasks:
        for seed in seeds:
            if seed not in states:
                t = time.perf_counter()
                states[seed] = seed_state(cfg, seed, lsn)
                log(f"[seed {seed}] data + separation {time.perf_counter() - t:.0f} s")
            for arm in arms:
                t = time.perf_counter()
                m = train_arm(cfg, seed, states[seed], task, arm)
                met, _ = _evaluate(task, m, states[seed]["test"], cfg)
                r = row(seed, task, arm, cfg.steps, met, time.perf_counter() - t)
                rows.append(r)
                main = "accuracy" if task == "svdh" else "mae"
                log(f"[seed {seed}] {task} {arm} @ {cfg.steps} steps: {main} {met[main]:.4f} "
                    f"({r['seconds']:.0f} s)")
                _write_csv(os.path.join(out, "raw.csv"), rows)
    return rows


def check():
    """The tiny config through this script and through the experiment, for both syntheses: every
    arm's row (all seven, a point of the label-fraction curve among them; all three tasks) must agree."""
    import tempfile

    base = FivePercentConfig.tiny()
    low_pct = f"{100 * base.low_fraction:g}%"  # the tiny config's low fraction is 10 %, not 5 %
    for synthesis in ("carry", "render"):
        cfg = FivePercentConfig(**{**base.__dict__, "bone": "both", "moves": "integer", "unlabelled": False,
                                   "fractions": (base.low_fraction, 0.5, 1.0), "synthesis": synthesis})
        with tempfile.TemporaryDirectory() as d:
            # the experiment separates with its own default LSN (small-fov since 2026-12-03), not LSN.pretrained()
            mine = run(cfg.steps, d, DEFAULT_LSN, seeds=(0,), tasks=("jsw", "jsn", "svdh"), cfg=cfg,
                       log=lambda s: None, arms=(ARM_A, "real 50%", ARM_B, ARM_D, ARM_C1, ARM_C2, ARM_C3))
            ref_rows = run_five_percent(config=cfg, seeds=(0,), out_dir=None, jobs=1, log=lambda s: None)["rows"]
        for r in mine:
            arm = r["arm"].replace("5%", low_pct)
            match = [x for x in ref_rows if x["task"] == r["task"] and x["seed"] == 0 and x["arm"] == arm]
            assert len(match) == 1, (synthesis, r["task"], arm, [x["arm"] for x in ref_rows])
            main = "accuracy" if r["task"] == "svdh" else "mae"
            assert abs(match[0][main] - r[main]) < 1e-9, (synthesis, r["task"], arm, match[0][main], r[main])
            print(f"check {synthesis:6s} {r['task']:4s} {arm:32s} {main} script {r[main]:.6f}  "
                  f"experiment {match[0][main]:.6f}")
    print("check passed")


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        check()
    else:
        import argparse

        ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        ap.add_argument("steps", type=int)
        ap.add_argument("out")
        ap.add_argument("weights", nargs="?", default=None, help="LSN weights (default: the shipped ones)")
        ap.add_argument("--arms", default="a,c3", help="comma-separated subset of a,c3")
        ap.add_argument("--tasks", default="jsw,jsn", help="comma-separated subset of jsw,jsn, in run order")
        ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="experiment seeds (default 0 1)")
        a = ap.parse_args()
        names = {"a": ARM_A, "c3": ARM_C3}
        bad = [x for x in a.arms.split(",") if x not in names] + [t for t in a.tasks.split(",") if t not in ("jsw", "jsn")]
        if bad:
            ap.error(f"--arms takes a,c3 and --tasks takes jsw,jsn; got {bad}")
        run(a.steps, a.out, a.weights, seeds=tuple(a.seeds), tasks=tuple(a.tasks.split(",")),
            arms=tuple(names[x] for x in a.arms.split(",")))
