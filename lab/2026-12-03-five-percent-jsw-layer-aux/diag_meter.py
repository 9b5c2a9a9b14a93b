"""Read LSN families with a JSW meter trained on 100 % of the real labels (diag_train.py's (a)
model): where do the families' labels and their geometry disagree? (diagnostic; CPU, 1 thread)

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-jsw-layer-aux/diag_meter.py DIAG_DIR SEED [N] [lsn|oracle|lsn-blur|oracle-blur|oracle-render|lsn-render] [SCALE]

Draws N family members (default 3000) from the (c3) synthesizer of that seed (source entry,
target JSW and whole-pixel move recorded), and prints the meter's error against the labels by
the size of the move; the meter's own bias on real training images is the reference.
``oracle``: the same synthesizer on the phantoms' true layers instead of the LSN's (the same
100 images carried, the same moves). ``-blur``: the synthesizer with ``carry_blur=True``
(``SCALE``: the fitted σ times SCALE). ``oracle-render``: no carry, the moved true layers
through a newly drawn detector (what a real phantom at that JSW looks like).
"""
import os
import sys

import torch

import lsn_fast as lf
from lsn_fast.tasks.experiment import _uniform
from lsn_fast.tasks.jsw_regression import JSWRegressor, predict_jsw

from _shared import WEIGHTS, longer  # noqa: E402  (this folder; on sys.path when run as a script)

if __name__ == "__main__":
    d, seed = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    torch.set_num_threads(1)
    diag = torch.load(os.path.join(d, f"diag_a_s{seed}.pt"))
    meter = JSWRegressor()
    meter.load_state_dict(diag["state"])
    meter.eval()
    cfg = longer.config(4500)
    st = longer.seed_state(cfg, seed, lf.LSN.pretrained(WEIGHTS))
    syn = st["synth"]
    mode = sys.argv[4] if len(sys.argv) > 4 else "lsn"
    oracle, blur = mode.startswith("oracle"), mode.endswith("-blur")  # lsn-render: the LSN layers, no carry
    if oracle or blur or mode.endswith("-render"):
        from lsn_fast.tasks.experiment import Synthesizer

        low = st["low"]
        bank = st["train"]["stack"][low] if oracle else lf.separate(st["train"]["base"][low], lf.LSN.pretrained(WEIGHTS),
                                                                      spacing_mm=cfg.spacing_mm)
        imgs = st["train"]["base"][low]
        scale = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
        if mode.endswith("-render"):  # no carry: the moved layers through a newly drawn detector
            syn = Synthesizer(bank, st["train"]["jsw"][low], cfg, moves=cfg.moves, bone=cfg.bone)
        elif blur and scale != 1.0:  # the fitted sigma times SCALE (is the fit too wide?)
            syn = Synthesizer(bank, st["train"]["jsw"][low], cfg, moves=cfg.moves, bone=cfg.bone)
            syn.bank = syn.bank.with_residual(imgs, blur_sigma_px=scale * syn.bank.fit_blur(imgs))
            syn.carries_texture = True
            mode = f"{mode}{scale:g}"
        else:
            syn = Synthesizer(bank, st["train"]["jsw"][low], cfg, images=imgs, moves=cfg.moves, bone=cfg.bone,
                              carry_blur=blur)
    g = torch.Generator().manual_seed(1234)
    idx = torch.randint(0, syn.bank.batch_size, (n,), generator=g)
    target, disp = syn.snap(idx, _uniform(g, n, *cfg.jsw_range))
    imgs = torch.cat([syn._render(idx[i:i + 100], target[i:i + 100], g, disp=disp[i:i + 100])
                      for i in range(0, n, 100)])
    pred = predict_jsw(meter, imgs)
    src = syn.labels[idx]
    move = target - src
    err = pred - target
    # the meter on the real images these families come from (at their own labels)
    real = predict_jsw(meter, st["train"]["base"][st["low"]]) - st["train"]["jsw"][st["low"]]
    print(f"meter on the 100 real source images: bias {float(real.mean()):+.4f}, MAE {float(real.abs().mean()):.4f} mm")
    print(f"meter on {n} families: bias {float(err.mean()):+.4f}, MAE {float(err.abs().mean()):.4f} mm\n")
    print("| move (target − source) mm | n | bias | MAE |")
    print("|---|---:|---:|---:|")
    for lo, hi in [(-3, -1.5), (-1.5, -0.75), (-0.75, -0.25), (-0.25, -0.05), (-0.05, 0.05), (0.05, 0.25),
                   (0.25, 0.75), (0.75, 1.5), (1.5, 3.01)]:
        k = (move >= lo) & (move < hi)
        if int(k.sum()):
            print(f"| {lo:+.2f} … {hi:+.2f} | {int(k.sum())} | {float(err[k].mean()):+.4f} | {float(err[k].abs().mean()):.4f} |")
    print("\n| target JSW mm | n | bias | MAE |")
    print("|---|---:|---:|---:|")
    for lo in [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]:
        k = (target >= lo) & (target < lo + 0.5 + (0.01 if lo == 2.5 else 0))
        print(f"| {lo:.1f}–{lo + 0.5:.1f} | {int(k.sum())} | {float(err[k].mean()):+.4f} | {float(err[k].abs().mean()):.4f} |")
    A = torch.stack([torch.ones(n, dtype=torch.float64), move.double(), target.double()], 1)
    c = torch.linalg.lstsq(A, err.double().unsqueeze(1)).solution.flatten()
    print(f"\nerror = {float(c[0]):+.4f} {float(c[1]):+.4f}·move {float(c[2]):+.4f}·target (mm)")
    torch.save({"idx": idx, "target": target, "disp": disp, "pred": pred, "src": src}, os.path.join(d, f"meter_s{seed}_{mode}.pt"))
