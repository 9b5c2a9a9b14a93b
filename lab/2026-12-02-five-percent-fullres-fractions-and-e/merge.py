"""Merge the fraction rows (``run.py``) and arm (e) (``run_e.py``) with the committed 1500-step ``raw.csv``; write
``table.md``, ``raw.csv``, ``equivalent_fraction.txt`` and ``error_vs_fraction.png`` here.

    python lab/2026-12-02-five-percent-fullres-fractions-and-e/merge.py OUT_DIR
"""
import csv
import glob
import math
import os
import sys

from lsn_fast.tasks.experiment import _aggregate, _plots, _write_csv, format_table
from run import HERE, config

BASE = os.path.join(HERE, "..", "2026-12-02-five-percent-fullres-1500steps", "raw.csv")
MAIN = {"jsw": ("mae", "lower"), "jsn": ("mae", "lower"), "svdh": ("accuracy", "higher")}


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def equivalent_fraction(agg, task):
    """Fraction of real labels at which the real-only curve reaches each low-label arm's main
    metric (linear interpolation in log fraction between the measured fractions)."""
    metric, better = MAIN[task]
    real = sorted(((float(a["arm"].split()[1].rstrip("%")), a[metric]) for a in agg
                   if a["task"] == task and a["arm"].startswith("real ")))
    out = []
    for a in agg:
        if a["task"] != task or a["arm"].startswith("real ") or a["arm"].startswith("POC"):
            continue
        v, eq = a[metric], None
        for (f0, v0), (f1, v1) in zip(real, real[1:]):
            if min(v0, v1) <= v <= max(v0, v1) and v0 != v1:
                t = (v - v0) / (v1 - v0)
                eq = math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))
                break
        worse_than_low = (v > real[0][1]) if better == "lower" else (v < real[0][1])
        label = (f"as good as {eq:.0f} % of the labels" if eq is not None
                 else ("worse than 5 % of the labels" if worse_than_low else "better than 100 % of the labels"))
        out.append(f"{task} {metric}: {a['arm']}: {v:.4f} -> {label}")
    return out


def main():
    out = sys.argv[1]
    base = _read(BASE)
    new = [r for pat in ("raw_seed*.csv", "raw_e_seed*.csv") for p in sorted(glob.glob(os.path.join(out, pat)))
           for r in _read(p)]
    check = [r for r in new if r["arm"] == "real 5%"]
    new = [r for r in new if r["arm"] != "real 5%"]
    lines = ["Reproduction check (re-trained, vs committed 1500-step raw.csv):"]
    for r in check:
        old = [b for b in base if b["task"] == r["task"] and b["arm"] == r["arm"] and b["seed"] == r["seed"]][0]
        lines.append(f"  seed {r['seed']} {r['task']} {r['arm']}: accuracy {float(r['accuracy']):.4f} vs committed "
                     f"{float(old['accuracy']):.4f}")
    rows = base + new
    order = {"jsw": 0, "jsn": 1, "svdh": 2}

    def key(r):
        real = r["arm"].startswith("real ")
        return (order[r["task"]], not real, float(r["arm"].split()[1].rstrip("%")) if real else 0.0)

    rows.sort(key=key)
    agg = _aggregate(rows)
    _write_csv(os.path.join(HERE, "raw.csv"), rows)
    with open(os.path.join(HERE, "table.md"), "w") as fh:
        fh.write(format_table(agg) + "\n")
    for task in ("jsw", "jsn", "svdh"):
        lines += equivalent_fraction(agg, task)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "equivalent_fraction.txt"), "w") as fh:
        fh.write(text)
    print(format_table(agg))
    print(text)
    _plots(HERE, agg, config(), {})


if __name__ == "__main__":
    main()
