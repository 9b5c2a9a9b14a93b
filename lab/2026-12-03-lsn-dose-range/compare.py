"""Tables of the eval JSONs: the shipped v12, run A of ../2026-12-03-lsn-recon-weight/ (same flags,
training dose 2e3–1e5) and the dose-range fine-tunes D1 (recon_rel=4) and D2 (recon_rel=12),
trained on n0 1e3–2e5; plus `wide` split by dose, where the prediction says the gain should be.

    python lab/2026-12-03-lsn-dose-range/compare.py > lab/2026-12-03-lsn-dose-range/compare.md
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

V12 = os.path.join(RES, "2026-12-03-lsn-v11short")
RW = os.path.join(RES, "2026-12-03-lsn-recon-weight")
MODELS = [("v12 (shipped)", os.path.join(V12, "{pre}_v11short_{{}}.json")),
          ("A: v12 + 5k, recon_rel=4, n0 2e3–1e5", os.path.join(RW, "{pre}_rwA_{{}}.json")),
          ("D1: v12 + 5k, recon_rel=4, n0 1e3–2e5", os.path.join(HERE, "{pre}_d1_{{}}.json")),
          ("D2: v12 + 5k, recon_rel=12, n0 1e3–2e5", os.path.join(HERE, "{pre}_d2_{{}}.json"))]

for size, pre in ((256, "eval"), (128, "eval128")):
    rows = [(n, p.format(pre=pre)) for n, p in MODELS if os.path.exists(p.format(pre=pre).format("wide"))]
    what = "the sets the targets are stated on" if size == 256 else "the five-percent experiment's field of view"
    print(f"{'' if size == 256 else chr(10)}## {size} px (`eval-lsn --size {size}`: {what})\n")
    print(eval_table(rows))

print("\n## `wide` at 256 px by dose: mean recomposition (%) of the images in each n0 band\n")
bands = [(0, 2000, "n0 < 2,000 (below the old training range)"), (2000, 2400, "2,000 ≤ n0 < 2,400"),
         (2400, 1e5, "2,400 ≤ n0 < 1e5"), (1e5, 1e12, "n0 ≥ 1e5 (above the old training range)")]
res = {n: json.load(open(p.format(pre="eval").format("wide"))) for n, p in MODELS
       if os.path.exists(p.format(pre="eval").format("wide"))}
n0 = next(iter(res.values()))["detector_per_sample"]["n0"]
print("| model | " + " | ".join(f"{b[2]} ({sum(b[0] <= x < b[1] for x in n0)})" for b in bands) + " | all |")
print("|---|" + "---:|" * (len(bands) + 1))
for name, r in res.items():
    assert r["detector_per_sample"]["n0"] == n0, "the sets differ"
    rec = r["per_sample"]["recomposition_rel"]
    cells = []
    for lo, hi, _ in bands:
        v = [100 * e for x, e in zip(n0, rec) if lo <= x < hi]
        cells.append(f"{sum(v) / len(v):.3f}" if v else "–")
    print(f"| {name} | " + " | ".join(cells) + f" | {100 * sum(rec) / len(rec):.3f} |")
