"""Realism of LSN (carry) families for each way of moving the bones, medium config.

    python lab/2026-12-02-five-percent-anatomy/realism_probe.py OUT.json [seeds...]
    CONFIG=fullres python ...realism_probe.py OUT.json 0 1   # the full-resolution run's data and critic budget

The experiment's critic (``_realism``: RealismCritic, same split, budget and seeds) on families
made with bone = upper / both and moves = linear / integer. Centring the gap moves the lower bone
too, and a linear sub-pixel move smooths the carried noise of every bone it moves.
"""
import json
import multiprocessing as mp
import os
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
VARIANTS = [("upper", "linear"), ("both", "linear"), ("upper", "integer"), ("both", "integer")]


def one_seed(seed):
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks.experiment import Synthesizer, _realism, experiment_data
    from probe import config

    cfg = config(os.environ.get("CONFIG", "medium"))
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    pool = order[n_low:][: cfg.realism_n]
    rows = []
    for bone, moves in VARIANTS:
        syn = Synthesizer(bank, train["jsw"][low], cfg, images=train["base"][low], bone=bone, moves=moves)
        rows.append({"seed": seed, "bone": bone, "moves": moves, "acc": _realism(train["base"][pool], syn, cfg, seed)})
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    out = sys.argv[1]
    seeds = [int(s) for s in sys.argv[2:]] or [0, 1, 2, 3]
    with mp.get_context("spawn").Pool(2) as pool:
        rows = [r for rs in pool.map(one_seed, seeds, chunksize=1) for r in rs]
    json.dump(rows, open(out, "w"), indent=1)
    for bone, moves in VARIANTS:
        v = torch.tensor([r["acc"] for r in rows if r["bone"] == bone and r["moves"] == moves])
        print(f"bone={bone:5s} moves={moves:7s} realism {v.mean():.3f} ± {v.std():.3f}  [{', '.join(f'{x:.3f}' for x in v)}]")
