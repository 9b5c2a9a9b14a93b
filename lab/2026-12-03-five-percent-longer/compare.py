"""Table and plot: arms (a) and (c3) at 400, 1500 and 4500 steps (same config, data, seeds, LSN v6).

    python lab/2026-12-03-five-percent-longer/compare.py [RAW_CSV]

Reads the committed 400-step (``../2026-12-02-five-percent-fullres-centred-guarded/``) and
1500-step (``../2026-12-02-five-percent-fullres-1500steps/``) rows and this folder's
``raw.csv`` (or RAW_CSV); writes ``compare.md`` and ``mae_vs_steps.png`` here.
"""
import csv
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.dirname(HERE)
ARMS = {"real 100%": "(a) real 100 %", "5% + LSN synth + aug (mixed)": "(c3) 5 % + LSN families + aug"}
SOURCES = ((400, os.path.join(RESULTS, "2026-12-02-five-percent-fullres-centred-guarded", "raw.csv")),
           (1500, os.path.join(RESULTS, "2026-12-02-five-percent-fullres-1500steps", "raw.csv")))


def load(path, steps=None):
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["arm"] in ARMS and r["task"] in ("jsw", "jsn"):
                yield int(r.get("steps") or steps), r["task"], r["arm"], int(r["seed"]), float(r["mae"])


def main():
    rows = [x for steps, p in SOURCES for x in load(p, steps)]
    rows += list(load(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "raw.csv")))
    cell = {}
    for steps, task, arm, seed, mae in rows:
        cell.setdefault((task, steps, arm), {})[seed] = mae
    lines = ["| task | steps | (a) real 100 % (seed 0 / 1) | (c3) 5 % + LSN families + aug (seed 0 / 1) | ratio (c3)/(a) |",
             "|---|---:|---|---|---:|"]
    curves = {}
    for task in ("jsw", "jsn"):
        for steps in sorted({k[1] for k in cell if k[0] == task}):
            a, c = cell.get((task, steps, "real 100%"), {}), cell.get((task, steps, "5% + LSN synth + aug (mixed)"), {})
            if len(a) < 2 or len(c) < 2:
                continue  # both seeds of both arms, or the row would compare different things
            ma, mc = statistics.mean(a.values()), statistics.mean(c.values())
            fmt = lambda d, m: f"{m:.4f} ({d[0]:.4f} / {d[1]:.4f})"  # noqa: E731
            lines.append(f"| {task.upper()} | {steps} | {fmt(a, ma)} | {fmt(c, mc)} | {mc / ma:.2f} |")
            curves.setdefault(task, []).append((steps, ma, mc))
    md = "MAE in mm, mean of seeds 0 and 1 (per seed in brackets).\n\n" + "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "compare.md"), "w") as f:
        f.write(md)
    print(md)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (task, pts) in zip(axes, curves.items()):
        s = [p[0] for p in pts]
        ax.plot(s, [p[1] for p in pts], "o-", label=ARMS["real 100%"])
        ax.plot(s, [p[2] for p in pts], "s-", label=ARMS["5% + LSN synth + aug (mixed)"])
        for st, ma, mc in pts:
            ax.annotate(f"×{mc / ma:.2f}", (st, mc), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.set_xscale("log")
        ax.set_xticks(s, [str(v) for v in s])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, None)
        ax.set_xlabel("optimizer steps per arm (batch 24)")
        ax.set_ylabel(f"{task.upper()} test MAE (mm)")
        ax.set_title(task.upper())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Five-percent, 128² px at 0.1 mm, 2 seeds, LSN v6 (CPU)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "mae_vs_steps.png"), dpi=120)


if __name__ == "__main__":
    main()
