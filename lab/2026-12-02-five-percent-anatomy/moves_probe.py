"""How should a family's bone be moved? ``Synthesizer(moves=...)``, more seeds, LSN carry only.

    python lab/2026-12-02-five-percent-anatomy/moves_probe.py OUT.json [seeds...]

Medium config (as ``probe.py``). Arms: (c1) mixed and (c3) mixed + naive aug on JSW, (c1) on
JSN, each with moves = linear (committed), cubic, integer. Two processes.
"""
import json
import multiprocessing as mp
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
MOVES = ("linear", "cubic", "integer")


def one_seed(seed):
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks._common import mixed_source, naive_augment, tensor_source
    from lsn_fast.tasks.experiment import Synthesizer, _evaluate, _real_data, _synth_fn, _train_task, experiment_data
    from probe import config

    cfg = config("medium")
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    rows = []
    for moves in MOVES:
        syn = Synthesizer(bank, train["jsw"][low], cfg, images=train["base"][low], moves=moves)
        for task, arm, aug in (("jsw", "c1", None), ("jsw", "c3", naive_augment()), ("jsn", "c1", None)):
            real_low = tensor_source(*_real_data(task, train, low))
            m = _train_task(task, mixed_source(real_low, _synth_fn(task, syn), cfg.synth_frac), cfg, seed, augment=aug)
            met, pred = _evaluate(task, m, test, cfg)
            truth = test["jsw"] if task == "jsw" else test["jsn"]
            rows.append({"seed": seed, "moves": moves, "task": task, "arm": arm, "mae": met["mae"],
                         "bias": float((pred - truth).mean())})
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    out = sys.argv[1]
    seeds = [int(s) for s in sys.argv[2:]] or [0, 1, 2, 3, 4, 5]
    with mp.get_context("spawn").Pool(2) as pool:
        rows = [r for rs in pool.map(one_seed, seeds, chunksize=1) for r in rs]
    json.dump(rows, open(out, "w"), indent=1)
    for task, arm in (("jsw", "c1"), ("jsw", "c3"), ("jsn", "c1")):
        for moves in MOVES:
            v = torch.tensor([r["mae"] for r in rows if r["task"] == task and r["arm"] == arm and r["moves"] == moves])
            b = torch.tensor([r["bias"] for r in rows if r["task"] == task and r["arm"] == arm and r["moves"] == moves])
            print(f"{task} {arm} {moves:8s} MAE {v.mean():.4f} ± {v.std():.4f} (SE {v.std() / len(v) ** 0.5:.4f})  "
                  f"bias {b.mean():+.4f}  [{', '.join(f'{x:.4f}' for x in v)}]")
