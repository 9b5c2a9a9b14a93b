"""v12 (shipped before) against the v13 candidate (v12 + a complete 45,000-step bf16 schedule;
`PREDICTION.md` holds the shipping rule written before the run), and the recomposition error of
every shipped fine-tune since v6 against the fine-tuning steps it had (log axis), with the
log-linear trend fitted on v9..v12 that the prediction extrapolated.

    python lab/2026-12-04-lsn-v13/compare.py > lab/2026-12-04-lsn-v13/compare.md
    # also writes lab/2026-12-04-lsn-v13/trend.png
"""
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import SETS, eval_table  # noqa: E402

V12 = os.path.join(RES, "2026-12-03-lsn-v11short", "eval_v11short_{}.json")
V13 = os.path.join(HERE, "eval_v13_{}.json")
# (name, bf16/fp32 fine-tuning steps since v6, eval files); each is the previous one + a new schedule.
LINEAGE = [("v6", 0, os.path.join(RES, "2026-12-02-lsn-v6-texture", "eval_v6_{}.json")),
           ("v9", 20_000, os.path.join(RES, "2026-12-03-lsn-cpu-bf16", "eval_bf16long_{}.json")),
           ("v10", 30_000, os.path.join(RES, "2026-12-03-lsn-cpu-bf16", "eval_v9cont_{}.json")),
           ("v11", 78_801, os.path.join(RES, "2026-12-03-lsn-v10long", "eval_v10long_{}.json")),
           ("v12", 100_801, V12),
           ("v13", 145_801, V13)]
FIT = ("v9", "v10", "v11", "v12")  # the points the prediction's slope came from


def load(pat, s):
    with open(pat.format(s)) as f:
        return json.load(f)


def fit(xs, ys):
    """Least-squares line y = a + b·log2(x)."""
    lx = [math.log2(x) for x in xs]
    mx, my = sum(lx) / len(lx), sum(ys) / len(ys)
    b = sum((u - mx) * (v - my) for u, v in zip(lx, ys)) / sum((u - mx) ** 2 for u in lx)
    return my - b * mx, b


def main():
    have13 = os.path.isfile(V13.format("wide"))
    runs = [("v12 (shipped before)", V12)] + ([("v13 candidate: v12 + 45k bf16 steps", V13)] if have13 else [])
    print("## 256 px, 32 held-out images per set\n")
    print(eval_table(runs))
    if os.path.isfile(os.path.join(HERE, "eval128_v13_wide.json")):
        print("\n## 128 px (the five-percent experiment's field of view; not in the shipping rule)\n")
        print(eval_table([("v12 (shipped before)", os.path.join(RES, "2026-12-03-lsn-v11short", "eval128_v11short_{}.json")),
                          ("v13 candidate", os.path.join(HERE, "eval128_v13_{}.json"))]))
    # recomposition (%) of each weights file that has been evaluated, read once: {name: {set: %}}
    done = [(n, st, p) for n, st, p in LINEAGE if os.path.isfile(p.format("wide"))]
    rec = {n: {s: 100 * load(p, s)["recomposition_rel"] for s in SETS} for n, _, p in done}
    pts = [(n, st) for n, st, _ in done]
    print("\n## Recomposition (%) of each shipped fine-tune against its fine-tuning steps since v6\n")
    print("| weights | steps since v6 | " + " | ".join(SETS) + " |")
    print("|---|---:|" + "---:|" * len(SETS))
    for n, st in pts:
        print(f"| {n} | {st:,} | " + " | ".join(f"{rec[n][s]:.3f}" for s in SETS) + " |")
    print("\nLog-linear fit on " + ", ".join(FIT) + " (recomposition % = a + b·log2(steps)):\n")
    at = LINEAGE[-1][1]  # the v13 run's steps, where the prediction read the fit
    fits = {}
    for s in SETS:
        xs = [st for n, st in pts if n in FIT]
        a, b = fit(xs, [rec[n][s] for n, _ in pts if n in FIT])
        fits[s] = (a, b)
        extra = ""
        if b < 0:
            need = 2 ** ((1.0 - a) / b)
            extra = f"; 1 % reached at about {need:,.0f} steps" if need > xs[-1] else "; already under 1 %"
        print(f"- {s}: b = {b:+.3f} points per doubling; at {at:,} steps the fit says {a + b * math.log2(at):.3f} %{extra}")
    plot(pts, rec, fits)


def plot(pts, rec, fits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    colors = {"wide": "tab:blue", "train": "tab:green", "shifted": "tab:orange", "ra": "tab:purple"}
    xs = [max(st, 3000) for _, st in pts]  # v6 (0 steps) drawn at the left edge of the log axis
    for s in SETS:
        ax.plot(xs, [rec[n][s] for n, _ in pts], "o-", color=colors[s], label=s, lw=1.2, ms=5)
        a, b = fits[s]
        gx = [15_000, 400_000]
        ax.plot(gx, [a + b * math.log2(x) for x in gx], ":", color=colors[s], lw=1)
    for (n, _), x in zip(pts, xs):
        ax.annotate(n, (x, rec[n]["wide"]), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.axhline(1.0, color="k", ls="--", lw=1, label="target 1 %")
    ax.set_xscale("log")
    ax.set_xlabel("fine-tuning steps since v6 (batch 1 of 256², log axis; v6 drawn at the left edge)")
    ax.set_ylabel("recomposition ‖S+U+L−A‖/‖A‖ (%)")
    ax.set_title("LSN recomposition error on the held-out sets vs training (dotted: fit on v9-v12)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "trend.png"), dpi=130)


if __name__ == "__main__":
    main()
