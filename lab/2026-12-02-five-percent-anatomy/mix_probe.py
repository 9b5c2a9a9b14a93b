"""New anatomies by mixing bones across joints: does it close the JSW gap left by 100 anatomies?

    python lab/2026-12-02-five-percent-anatomy/mix_probe.py medium OUT.json [seeds...]

The five-percent (c) arms fall short of (a) on JSW mostly for want of anatomies (mixing.md of the
medium-v4 run: true layers of 2000 joints train as well as 2000 real images, 100 joints cost
0.004–0.010 mm). A layer bank allows what no image bank does: a new joint from the upper bone
(and soft tissue) of joint i and the lower bone of joint j, 100² pairings from 100 joints.

How a mixed entry is made (``mixed_bank``): j is drawn among the bank joints whose axis is within
``MAX_DTILT`` degrees of i's (the bones must meet at one tilt); j's lower bone is translated by the
whole-pixel shift that best overlaps it with i's lower bone (cross-correlation over ±``SEARCH`` px,
edge-clamped like ``reference.translate``: the shaft continues beyond the crop), so the gap stays
about where i's was. The mixed joint's JSW is *measured* on its layers (``lf.measure_jsw``) plus the
bank's mean offset annotation − measured (as arm (e) calibrates; 0 for true layers up to the
measurement floor). Mixes whose JSW cannot be measured or is below 0.05 mm are dropped.

Arms, JSW task only, the experiment's own data, seeds and trainer (mixed batches, half real 5 %):
``oracle`` (true layers, rendered through a new detector, as the experiment's oracle arm) and
``oracle+mix`` (the same plus ``N_MIX`` mixed entries in the bank); then the same two for the
shipped LSN's layers rendered (``lsn-render``; no texture carry, because a mixed joint has no
source image whose residual it could carry). One process per seed.
"""
import json
import math
import multiprocessing as mp
import sys
import time

import torch

from probe import config

N_MIX, MAX_DTILT, SEARCH = 400, 2.0, 6


def mixed_bank(bank, labels, n_mix, g):
    """``(LayerStack of up to n_mix mixed joints, their labels (mm), info)`` from ``bank``."""
    import torch.nn.functional as F

    import lsn_fast as lf
    from lsn_fast.reference import translate

    axis = bank.resolved_axis()
    j0 = lf.measure_jsw(lf.LayerStack(bank.soft, bank.upper, bank.lower, bank.spacing_mm, axis, validate=False))
    ok = torch.isfinite(j0)
    offset = float((labels[ok] - j0[ok]).mean())
    close = (axis @ axis.T) >= math.cos(math.radians(MAX_DTILT))
    close &= ok[None, :] & ok[:, None] & ~torch.eye(len(labels), dtype=torch.bool)
    cand = torch.nonzero(close.any(1)).flatten()
    soft, upper, lower, ax = [], [], [], []
    for _ in range(n_mix):
        i = int(cand[torch.randint(0, cand.numel(), (1,), generator=g)])
        js = torch.nonzero(close[i]).flatten()
        j = int(js[torch.randint(0, js.numel(), (1,), generator=g)])
        # whole-pixel shift of j's lower bone that best overlaps i's (correlation over ±SEARCH px)
        li, lj = bank.lower[i].float(), bank.lower[j].float()
        padded = F.pad(lj[None, None], (SEARCH,) * 4, mode="replicate")[0, 0]
        score = F.conv2d(padded[None, None], li[None, None])[0, 0]  # (2S+1, 2S+1), index = S − shift
        k = int(score.argmax())
        dy, dx = SEARCH - k // score.shape[1], SEARCH - k % score.shape[1]
        soft.append(bank.soft[i]), upper.append(bank.upper[i]), ax.append(axis[i])
        lower.append(translate(lj[None], torch.tensor([[float(dy), float(dx)]]))[0].to(bank.lower.dtype))
    mix = lf.LayerStack(torch.stack(soft), torch.stack(upper), torch.stack(lower), bank.spacing_mm, torch.stack(ax),
                        validate=False)
    jm = lf.measure_jsw(mix) + offset
    keep = torch.isfinite(jm) & (jm >= 0.05)
    keep_idx = torch.nonzero(keep).flatten()
    info = {"offset_mm": offset, "made": n_mix, "kept": int(keep.sum()), "candidates": int(cand.numel()),
            "label_mean": float(jm[keep].mean()), "label_std": float(jm[keep].std())}
    return mix[keep_idx], jm[keep].float(), info


def one_seed(args):
    name, seed = args
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks._common import mixed_source, tensor_source
    from lsn_fast.tasks.experiment import Synthesizer, _evaluate, _real_data, _synth_fn, _train_task, experiment_data

    cfg = config(name)
    t0 = time.perf_counter()
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    lab = train["jsw"][low]
    lsn_bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    lsn_bank = lf.LayerStack(lsn_bank.soft, lsn_bank.upper, lsn_bank.lower, lsn_bank.spacing_mm,
                             lsn_bank.resolved_axis(), validate=False)
    banks = {"oracle": train["stack"][low], "lsn-render": lsn_bank}
    rows, infos = [], {}
    real_low = tensor_source(*_real_data("jsw", train, low))
    for bname, bank in banks.items():
        g = torch.Generator().manual_seed(4242 + seed)
        mix, mlab, info = mixed_bank(bank, lab, N_MIX, g)
        infos[bname] = info
        print(f"[seed {seed}] {bname}: {info}", flush=True)
        both = lf.LayerStack(torch.cat([bank.soft, mix.soft]), torch.cat([bank.upper, mix.upper]),
                             torch.cat([bank.lower, mix.lower]), bank.spacing_mm,
                             torch.cat([bank.resolved_axis(), mix.axis]), validate=False)
        for arm, s in ((bname, Synthesizer(bank, lab, cfg)),
                       (bname + "+mix", Synthesizer(both, torch.cat([lab.float(), mlab]), cfg))):
            tt = time.perf_counter()
            m = _train_task("jsw", mixed_source(real_low, _synth_fn("jsw", s), cfg.synth_frac), cfg, seed)
            met, pred = _evaluate("jsw", m, test, cfg)
            rows.append({"seed": seed, "arm": arm, "mae": met["mae"], "bias": float((pred - test["jsw"]).mean()),
                         "r": met["r"], "s": round(time.perf_counter() - tt, 1)})
            print(rows[-1], flush=True)
    print(f"seed {seed} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return rows, infos


if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    seeds = [int(s) for s in sys.argv[3:]] or [0, 1, 2]
    with mp.get_context("spawn").Pool(2) as pool:
        res = pool.map(one_seed, [(name, s) for s in seeds])
    rows = [r for rs, _ in res for r in rs]
    json.dump({"config": name, "n_mix": N_MIX, "max_dtilt": MAX_DTILT, "rows": rows, "banks": [i for _, i in res]},
              open(out, "w"), indent=1)
    for arm in ("oracle", "oracle+mix", "lsn-render", "lsn-render+mix"):
        v = torch.tensor([r["mae"] for r in rows if r["arm"] == arm])
        b = torch.tensor([r["bias"] for r in rows if r["arm"] == arm])
        print(f"{arm:16s} JSW MAE {v.mean():.4f} ± {v.std():.4f}  bias {b.mean():+.4f}  per seed {[round(float(x), 4) for x in v]}")
