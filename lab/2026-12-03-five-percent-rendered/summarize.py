"""Table and plot of this folder's runs beside the committed (a) and (c3)-carry rows they compare with.

    python lab/2026-12-03-five-percent-rendered/summarize.py   # writes table.md, rendered_vs_carry.png

Every number is read from a committed CSV (paths below); nothing is typed in.
"""
import csv
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
R = os.path.join(HERE, "..")
A, C3 = "real 100%", "5% + LSN synth + aug (mixed)"
# (task, arm) -> list of (csv path, arm name in that file); the seeds come from the rows
SOURCES = {
    ("jsw", "a"): [("2026-12-03-five-percent-longer/raw.csv", A), ("2026-12-03-five-percent-jsn-seed2/raw_jsw_a_s2.csv", A)],
    ("jsn", "a"): [("2026-12-03-five-percent-longer/raw.csv", A), ("2026-12-03-five-percent-jsn-seed2/raw_jsn_a_s2.csv", A)],
    ("svdh", "a"): [(f"2026-12-03-five-percent-rendered/raw_svdh_a_s{s}.csv", A) for s in range(3)],
    ("jsw", "carry"): [("2026-12-03-five-percent-small-fov/raw_jsw_s0.csv", C3), ("2026-12-03-five-percent-small-fov/raw_jsw_s1.csv", C3),
                       ("2026-12-03-five-percent-jsn-seed2/raw_jsw_c3_s2.csv", C3)],
    ("jsn", "carry"): [("2026-12-03-five-percent-small-fov/raw_s0.csv", C3), ("2026-12-03-five-percent-small-fov/raw_s1.csv", C3),
                       ("2026-12-03-five-percent-jsn-seed2/raw_jsn_c3_s2.csv", C3)],
    ("jsw", "render"): [("2026-12-03-five-percent-jsw-layer-aux/raw_c3r_s0.csv", None), ("2026-12-03-five-percent-jsw-layer-aux/raw_c3r_s1.csv", None),
                        ("2026-12-03-five-percent-rendered/raw_jsw_s2.csv", None)],
    ("jsn", "render"): [(f"2026-12-03-five-percent-rendered/raw_jsn_s{s}.csv", None) for s in range(3)],
    ("svdh", "render"): [(f"2026-12-03-five-percent-rendered/raw_svdh_s{s}.csv", None) for s in range(3)],
    **{(t, arm): [(f"2026-12-03-five-percent-rendered/raw_{t}_{arm}_s{s}.csv", None) for s in range(3)]
       for t in ("jsw", "jsn", "svdh") for arm in ("b", "d", "c1", "c2", "f10", "f25", "f50")},
}
ARMS = {"a": "(a) real 100 %", "b": "(b) real 5 %", "d": "(d) 5 % + naive aug",
        "c1": "(c1R) 5 % + rendered families, no aug", "c2": "(c2R) rendered pre-training, 5 % fine-tuning",
        "f10": "real 10 %", "f25": "real 25 %", "f50": "real 50 %", "carry": "(c3) 5 % + carried families",
        "render": "(c3R) 5 % + rendered families"}
TITLE = {"jsw": "JSW", "jsn": "JSN", "svdh": "SvdH"}
COLORS = {"a": "#444444", "b": "#b03030", "d": "#a070c0", "c1": "#70b0e0", "c2": "#40a070", "carry": "#d08030",
          "render": "#3070c0"}
MAIN = {"jsw": ("mae", "MAE mm", False), "jsn": ("mae", "MAE mm", False), "svdh": ("accuracy", "accuracy", True)}


def rows(task, arm):
    out = {}
    for path, name in SOURCES.get((task, arm), []):
        p = os.path.join(R, path)
        if not os.path.exists(p):
            continue
        with open(p) as fh:
            for r in csv.DictReader(fh):
                if r["task"] == task and (name is None or r["arm"] == name) and int(r["steps"]) == 4500:
                    out[int(r["seed"])] = r
    return out


def realism():
    out = {}
    for s in range(3):
        p = os.path.join(HERE, f"realism_s{s}.csv")
        if os.path.exists(p):
            with open(p) as fh:
                out[s] = {k: float(v) for k, v in next(csv.DictReader(fh)).items()}
    return out


def main():
    lines = ["# Five-percent, full config at 4500 steps (small-fov LSN, CPU): rendered vs carried families, every arm against (a)", "",
             "`—`: not run. `mean / (a)` divides by (a)'s mean over the same seeds.", "",
             "Made by `python lab/2026-12-03-five-percent-rendered/summarize.py` from the CSVs it names.", "",
             "| task | metric | arm | seed 0 | seed 1 | seed 2 | mean | mean / (a) | bias (mean) |", "|---|---|---|---|---|---|---|---|---|"]
    data = {}
    for task, (key, label, higher) in MAIN.items():
        a = rows(task, "a")
        for arm in ("a", "f50", "f25", "f10", "b", "d", "c1", "c2", "carry", "render"):
            rs = rows(task, arm)
            if not rs:
                continue
            vals = {s: float(r[key]) for s, r in rs.items()}
            data[(task, arm)] = vals
            mean = statistics.mean(vals.values())
            common = [s for s in vals if s in a]
            ratio = (statistics.mean(vals[s] for s in common) / statistics.mean(float(a[s][key]) for s in common)) if common else float("nan")
            bias = statistics.mean(float(r["bias"]) for r in rs.values()) if "bias" in next(iter(rs.values())) else None
            cells = [f"{vals[s]:.4f}" if s in vals else "—" for s in range(3)]
            lines.append(f"| {task} | {label} | {ARMS[arm]} | " + " | ".join(cells) + f" | {mean:.5f} | {ratio:.3f} | "
                         + (f"{bias:+.4f}" if bias is not None else "—") + " |")
    rl = realism()
    if rl:
        lines += ["", "Realism critic (held-out accuracy; 0.5 = indistinguishable, target <= 0.6), the experiment's critic, "
                  "split and budget (200 images, 150 steps) at the same config:", "",
                  "| families | seed 0 | seed 1 | seed 2 | mean |", "|---|---|---|---|---|"]
        for k, name in (("lsn_carry", "carried (texture carry, no detector)"), ("lsn_rendered", "rendered (new detector)"),
                        ("control", "positive control (σ = 1 px blur)")):
            v = [rl[s][k] for s in sorted(rl)]
            lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {statistics.mean(v):.3f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "table.md"), "w") as fh:
        fh.write(text)
    print(text)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 5, figsize=(21, 3.9))
    for ax, task in zip(axes[:3], ("jsw", "jsn", "svdh")):
        _, label, higher = MAIN[task]
        for j, arm in enumerate(("a", "carry", "render")):
            vals = data.get((task, arm), {})
            xs = [s + (j - 1) * 0.25 for s in sorted(vals)]
            ax.bar(xs, [vals[s] for s in sorted(vals)], width=0.25, color=COLORS[arm], label=ARMS[arm])
        ax.set_xticks(range(3), [f"seed {s}" for s in range(3)])
        ax.set_ylabel(f"{TITLE[task]} {label}")
        shown = [x for (t, arm), v in data.items() if t == task and arm in ("a", "carry", "render") for x in v.values()]
        if higher:
            ax.set_ylim(min(shown) - 0.02, 1.0)
        else:
            ax.set_ylim(min(shown) * 0.85, max(shown) * 1.12)  # room for the legend
        ax.set_title(f"{TITLE[task]} ({'higher' if higher else 'lower'} is better)")
    axes[0].legend(fontsize=7, loc="upper left")
    # the controls: seed 0, every arm, error relative to (a) (SvdH error = 1 - accuracy), log scale
    ax = axes[3]
    arms = ("a", "b", "d", "c1", "c2", "carry", "render")
    for j, arm in enumerate(arms):
        xs, ys = [], []
        for i, task in enumerate(("jsw", "jsn", "svdh")):
            v, a0 = data.get((task, arm), {}).get(0), data.get((task, "a"), {}).get(0)
            if v is None or a0 is None:
                continue
            err = (lambda x: 1 - x) if MAIN[task][2] else (lambda x: x)
            xs.append(i + (j - 3) * 0.12)
            ys.append(err(v) / err(a0))
        ax.bar(xs, ys, width=0.12, color=COLORS[arm], label=ARMS[arm])
    ax.set_yscale("log")
    ax.set_ylim(0.5, 3000)  # headroom above (b)'s ~10x for the legend
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(3), ["JSW MAE", "JSN MAE", "SvdH 1 - acc"])
    ax.set_ylabel("error / (a)'s, seed 0 (log)")
    ax.set_title("all arms, seed 0 (lower is better)")
    ax.legend(fontsize=6, loc="upper right")
    if rl:
        ax = axes[4]
        for j, (k, name, c) in enumerate((("lsn_carry", "carried", COLORS["carry"]), ("lsn_rendered", "rendered", COLORS["render"]))):
            ax.bar([s + (j - 0.5) * 0.35 for s in sorted(rl)], [rl[s][k] for s in sorted(rl)], width=0.35, color=c, label=name)
        ax.axhline(0.6, color="k", ls="--", lw=1, label="target 0.6")
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_ylim(0.3, 1.0)
        ax.set_xticks(range(3), [f"seed {s}" for s in range(3)])
        ax.set_ylabel("critic held-out accuracy")
        ax.set_title("realism (lower is better)")
        ax.legend(fontsize=7)
    fig.suptitle("five-percent, 128 px / 0.1 mm, 4500 steps, small-fov LSN, CPU (AMD EPYC, 1 thread per arm)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "rendered_vs_carry.png"), dpi=110)
    fraction_plot(data, plt)


FRACTIONS = {"b": 5, "f10": 10, "f25": 25, "f50": 50, "a": 100}


def fraction_plot(data, plt):
    """The issue's "error vs fraction of labels" at seed 0: real-label arms as a curve, the 5 % arms
    that add families or augmentation as horizontal lines (they use 5 % of the labels)."""
    tasks = [t for t in ("jsw", "jsn", "svdh") if sum(0 in data.get((t, a), {}) for a in FRACTIONS) >= 3]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.9), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        _, label, higher = MAIN[task]
        pts = sorted((f, data[(task, a)][0]) for a, f in FRACTIONS.items() if 0 in data.get((task, a), {}))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS["a"], label="real labels only")
        for arm in ("d", "render"):
            v = data.get((task, arm), {}).get(0)
            if v is not None:
                ax.axhline(v, color=COLORS[arm], ls="--", lw=1.2, label=ARMS[arm])
        ax.set_xscale("log")
        ax.set_xticks([5, 10, 25, 50, 100], ["5", "10", "25", "50", "100"])
        if not higher:
            from matplotlib.ticker import FormatStrFormatter, NullFormatter

            ax.set_yscale("log")
            lo, hi = ax.get_ylim()
            ax.set_yticks([t for t in (0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2) if lo <= t <= hi])
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.3f"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("labelled training images (% of 2000)")
        ax.set_ylabel(f"{TITLE[task]} {label}")
        ax.set_title(f"{TITLE[task]}, seed 0 ({'higher' if higher else 'lower'} is better)")
        ax.legend(fontsize=7)
    fig.suptitle("error vs fraction of labels, 4500 steps, 128 px / 0.1 mm, CPU", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "error_vs_fraction.png"), dpi=110)


if __name__ == "__main__":
    main()
