"""Markdown table of ``lsn-fast eval-lsn --json`` files: one row per (held-out set, weights).

Used by the ``compare.py`` scripts of the LSN study folders under ``lab/``.
"""
import json

SETS = ("wide", "train", "shifted", "ra")
COLS = [("recomposition_rel", "recomposition %", 100, 3), ("bone_psnr_db", "bone PSNR dB", 1, 2),
        ("bone_ssim", "bone SSIM", 1, 4), ("soft_psnr_db", "soft PSNR dB", 1, 2), ("jsw_mae_mm", "JSW MAE mm", 1, 4)]


def eval_table(runs) -> str:
    """``runs``: [(name, path pattern with ``{}`` for the set name)]."""
    lines = ["| set | weights | " + " | ".join(c[1] for c in COLS) + " |", "|---|---|" + "---|" * len(COLS)]
    for s in SETS:
        for name, pat in runs:
            with open(pat.format(s)) as f:
                d = json.load(f)
            lines.append(f"| {s} | {name} | " + " | ".join(f"{d[k] * m:.{n}f}" for k, _, m, n in COLS) + " |")
    return "\n".join(lines)
