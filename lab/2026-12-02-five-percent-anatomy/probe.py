"""Layer-level anatomy jitter for the five-percent (c) arms: a probe on one config, few arms.

    python lab/2026-12-02-five-percent-anatomy/probe.py medium OUT.json [seeds...]

``medium`` = the committed medium-carry run's data (64² px, 0.2 mm, 2000 labelled, 400 test,
400 steps); ``fullres`` = the committed full-resolution run's (128² px, 0.1 mm, batch 24).
Arms (same data, seeds and trainers as ``lsn-fast experiment five-percent``):
(c1) LSN synth (mixed) as committed, then (c1)/(c3)/(c4) with the LSN families' anatomy jittered
as layers (``Synthesizer(stretch=, density=)``). Tasks JSW and JSN. One process per seed.
"""
import json
import multiprocessing as mp
import sys
import time

import torch

STRETCH, DENSITY = 0.1, 0.1


def config(name):
    from dataclasses import replace

    from lsn_fast.tasks.experiment import FivePercentConfig

    if name == "medium":
        return replace(FivePercentConfig.quick(), n_train=2000, n_test=400, steps=400)
    if name == "fullres":
        return replace(FivePercentConfig(synthesis="carry"), steps=400, batch_size=24, fractions=(0.05, 1.0), realism_n=200,
                       realism_steps=150)
    raise SystemExit(f"unknown config {name!r}")


def one_seed(args):
    name, seed = args
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks._common import mixed_source, naive_augment, tensor_source
    from lsn_fast.tasks.experiment import (Synthesizer, _evaluate, _real_data, _synth_fn, _train_task,
                                           experiment_data)

    cfg = config(name)
    t0 = time.perf_counter()
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    lsn = lf.LSN.pretrained()
    bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)
    carry = train["base"][low]
    lab = train["jsw"][low]
    syn = {
        "c1": Synthesizer(bank, lab, cfg, images=carry),
        "c1+anat": Synthesizer(bank, lab, cfg, images=carry, stretch=STRETCH, density=DENSITY),
        "c4+anat": Synthesizer(bank, lab, cfg, images=carry, rotate_deg=cfg.pose_rotate_deg, hflip=cfg.pose_hflip,
                               stretch=STRETCH, density=DENSITY),
    }
    rows = []
    for task in ("jsw", "jsn"):
        real_low = tensor_source(*_real_data(task, train, low))
        aug = naive_augment(pair=(task == "jsn"))
        for arm, s, a in (("c1", "c1", None), ("c1+anat", "c1+anat", None), ("c3+anat", "c1+anat", aug),
                          ("c4+anat", "c4+anat", None)):
            tt = time.perf_counter()
            m = _train_task(task, mixed_source(real_low, _synth_fn(task, syn[s]), cfg.synth_frac), cfg, seed, augment=a)
            met = _evaluate(task, m, test, cfg)[0]
            rows.append({"seed": seed, "task": task, "arm": arm, "mae": met["mae"], "r": met["r"],
                         "s": round(time.perf_counter() - tt, 1)})
            print(rows[-1], flush=True)
    print(f"seed {seed} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    seeds = [int(s) for s in sys.argv[3:]] or [0, 1, 2]
    with mp.get_context("spawn").Pool(2) as pool:
        rows = [r for rs in pool.map(one_seed, [(name, s) for s in seeds]) for r in rs]
    json.dump({"config": name, "stretch": STRETCH, "density": DENSITY, "rows": rows}, open(out, "w"), indent=1)
    for task in ("jsw", "jsn"):
        for arm in ("c1", "c1+anat", "c3+anat", "c4+anat"):
            v = torch.tensor([r["mae"] for r in rows if r["task"] == task and r["arm"] == arm])
            print(f"{task} {arm:8s} MAE {v.mean():.4f} ± {v.std():.4f}  ({', '.join(f'{x:.4f}' for x in v)})")
