"""Does the bone move's interpolation bias the synthesized-family arms? JSW task, medium config.

    python lab/2026-12-02-five-percent-anatomy/bias_probe.py OUT.json [seeds...]

For the LSN (carry) and the oracle (true layers, rendered) banks: families moved with linear
interpolation (as committed), Keys cubic, and whole-pixel moves (``Synthesizer(moves="integer")``:
the displacement rounded per component, labelled with the JSW it reaches; no interpolation blur).
The first run (``bias_probe_medium_axis.json``) rounded only the move *along* the axis, so tilted
joints were still interpolated. (c1)-style mixed training.
Reports MAE and mean signed error (bias) on the test set; one process per seed.
"""
import json
import multiprocessing as mp
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def one_seed(seed):
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks._common import mixed_source, tensor_source
    from lsn_fast.tasks.experiment import Synthesizer, _evaluate, _real_data, _train_task, experiment_data
    from probe import config

    cfg = config("medium")
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    lab, carry = train["jsw"][low], train["base"][low]
    real_low = tensor_source(*_real_data("jsw", train, low))
    rows = []
    for src in ("lsn carry", "oracle"):
        for interp in ("linear", "cubic", "integer"):
            b, imgs = (bank, carry) if src == "lsn carry" else (train["stack"][low], None)
            syn = Synthesizer(b, lab, cfg, images=imgs, moves=interp)
            m = _train_task("jsw", mixed_source(real_low, syn.jsw_batch, cfg.synth_frac), cfg, seed)
            met, pred = _evaluate("jsw", m, test, cfg)
            rows.append({"seed": seed, "bank": src, "interp": interp, "mae": met["mae"],
                         "bias": float((pred - test["jsw"]).mean())})
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    out = sys.argv[1]
    seeds = [int(s) for s in sys.argv[2:]] or [0, 1]
    with mp.get_context("spawn").Pool(2) as pool:
        rows = [r for rs in pool.map(one_seed, seeds) for r in rs]
    json.dump(rows, open(out, "w"), indent=1)
    for src in ("lsn carry", "oracle"):
        for interp in ("linear", "cubic", "integer"):
            rs = [r for r in rows if r["bank"] == src and r["interp"] == interp]
            print(f"{src:9s} {interp:7s} MAE {sum(r['mae'] for r in rs) / len(rs):.4f}  "
                  f"bias {sum(r['bias'] for r in rs) / len(rs):+.4f}  ({len(rs)} seeds)")
