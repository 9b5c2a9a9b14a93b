"""Training curves of the two refiner runs (recon_rel = the evaluation's recomposition error on the
training batch, × 10; recon = L1 of S+U+L vs the clean attenuation, × 10), smoothed over 100 logs.

    python lab/2026-12-01-lsn-cpu-refiner/plot_refiner_curves.py \
        train_log_refine16.jsonl.gz train_log_refine32.jsonl.gz refiner_train_curves.png
"""
import gzip
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smooth(v, n=100):
    out, s = [], 0.0
    for i, x in enumerate(v):
        s += x - (v[i - n] if i >= n else 0.0)
        out.append(s / min(i + 1, n))
    return out


def main(log16, log32, png):
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for log, name in ((log16, "refiner 16 ch (shipped v3)"), (log32, "refiner 32 ch")):
        recs = [json.loads(line) for line in gzip.open(log, "rt")]
        steps = [r["step"] for r in recs]
        ax[0].plot(steps, smooth([r["recon_rel"] / 10 * 100 for r in recs]), label=name, lw=1)
        ax[1].plot(steps, smooth([r["layer"] for r in recs]), label=name, lw=1)
    ax[0].set_ylabel("recomposition error on training batches (%)")
    ax[1].set_ylabel("layer L1 (× 10)")
    for a in ax:
        a.set_xlabel("step (batch 1, 256² px)")
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle("refiner-only fine-tune of the shipped v2 (U-Net frozen), 1 CPU thread each")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


if __name__ == "__main__":
    main(*sys.argv[1:4])
