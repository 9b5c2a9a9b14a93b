"""Bias and error of (a) and (c3) by JSW bin, on the test set and on the training images the
(c3) model never saw labelled (the 95 %; their truth is known here only).

    python lab/2026-12-03-five-percent-jsw-layer-aux/diag_analyse.py DIAG_DIR SEED > diag_s1.md
"""
import os
import sys

import torch

d, seed = sys.argv[1], int(sys.argv[2])
runs = {arm: torch.load(os.path.join(d, f"diag_{arm}_s{seed}.pt")) for arm in ("a", "c3")}
edges = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.01]


def table(name, pred_key, true_key, sel_key=None):
    print(f"\n### {name}\n")
    print("| JSW bin (mm) | n | (a) bias | (c3) bias | (a) MAE | (c3) MAE |")
    print("|---|---:|---:|---:|---:|---:|")
    for lo, hi in list(zip(edges[:-1], edges[1:])) + [(0.0, 3.01)]:
        cells = []
        n = 0
        for arm in ("a", "c3"):
            r = runs[arm]
            t, p = r[true_key], r[pred_key]
            keep = (t >= lo) & (t < hi)
            if sel_key is not None:
                keep &= ~r[sel_key]
            e = (p - t)[keep]
            n = int(keep.sum())
            cells.append((float(e.mean()), float(e.abs().mean())))
        lab = "all" if (lo, hi) == (0.0, 3.01) else f"{lo:.1f}-{hi:.1f}"
        print(f"| {lab} | {n} | {cells[0][0]:+.4f} | {cells[1][0]:+.4f} | {cells[0][1]:.4f} | {cells[1][1]:.4f} |")


table(f"test set (seed {seed}, wider anatomy/dose/tilt ranges)", "test_pred", "test_jsw")
table(f"training images not labelled for (c3) (seed {seed}, the 95 %; (a) trained on them)", "train_pred", "train_jsw", "low")
r = runs["c3"]
e = (r["train_pred"] - r["train_jsw"])[r["low"]]
print(f"\n(c3) on its own 5 % labelled images: bias {float(e.mean()):+.4f}, MAE {float(e.abs().mean()):.4f} mm")
for arm in ("a", "c3"):
    r = runs[arm]
    x, y = r["test_jsw"].double(), r["test_pred"].double()
    A = torch.stack([torch.ones_like(x), x], 1)
    c = torch.linalg.lstsq(A, y.unsqueeze(1)).solution.flatten()
    print(f"{arm}: test prediction = {float(c[0]):+.4f} + {float(c[1]):.4f} x true")
