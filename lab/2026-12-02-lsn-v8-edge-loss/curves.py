"""Training curves of the two v8 runs (paired: same data, seed and schedule), smoothed over 500
steps: the recomposition term ``recon_rel`` (= LOSS_SCALE × the metric on training crops) and
the edge-band term ``recon_edge`` (logged in both runs, trained on only in ``edge``).

    python lab/2026-12-02-lsn-v8-edge-loss/curves.py
"""
import gzip
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with gzip.open(os.path.join(HERE, f"train_log_v8{name}.jsonl.gz"), "rt") as fh:
        return [json.loads(line) for line in fh]


def smooth(xs, k=50):  # logged every 10 steps: 50 entries = 500 steps
    return [sum(xs[max(0, i - k + 1):i + 1]) / len(xs[max(0, i - k + 1):i + 1]) for i in range(len(xs))]


fig, axs = plt.subplots(1, 2, figsize=(11, 4))
for name, style in (("ctrl", "-"), ("edge", "--")):
    log = load(name)
    steps = [r["step"] for r in log]
    for ax, key in zip(axs, ("recon_rel", "recon_edge")):
        ax.plot(steps, [10.0 * v for v in smooth([r[key] for r in log])], style,
                label=f"{name}{' (+ recon_edge=2)' if name == 'edge' else ' (more steps only)'}")
for ax, title in zip(axs, ("recomposition error on training crops (%)", "its part in the ±2 px bone-edge band (%)")):
    ax.set_xlabel("step (from v6)")
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(HERE, "curves.png"), dpi=110)
