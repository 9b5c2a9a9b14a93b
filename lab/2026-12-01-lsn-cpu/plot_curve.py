"""Training curve (loss vs step) of an LSN run from its ``log.jsonl`` (``train-lsn --log-every N``).

    python lab/2026-12-01-lsn-cpu/plot_curve.py /tmp/lsn_runs/long/log.jsonl OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smooth(v, n):
    out, acc = [], []
    for x in v:
        acc.append(x)
        if len(acc) > n:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main(log, png, window=50):
    recs = [json.loads(line) for line in open(log)]
    steps = [r["step"] for r in recs]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for k in ("loss", "layer", "grad", "recon", "counts", "seg"):
        ax[0].plot(steps, smooth([r[k] for r in recs], window), label=k, lw=1)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel(f"loss (running mean of {window} logged steps)")
    ax[0].legend(fontsize=8)
    ax[0].grid(alpha=0.3)
    ax[1].plot(steps, [r["lr"] for r in recs])
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("learning rate")
    ax[1].grid(alpha=0.3)
    fig.suptitle("LSN stage 1, CPU 1 thread: " + log)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print("wrote", png, len(recs), "records, last step", steps[-1])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50)
