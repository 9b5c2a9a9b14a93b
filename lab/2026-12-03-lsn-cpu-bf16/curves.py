"""Left: the recomposition term on training crops (``recon_rel`` = LOSS_SCALE x the metric),
smoothed over 500 steps, against wall-clock minutes: fp32 ``ctrl`` (2026-12-02) and this session's
bf16 runs (same data, seed and flags). Right: held-out recomposition error (wide set, 32 images)
against the fine-tuning steps from v6.

    python lab/2026-12-03-lsn-cpu-bf16/curves.py      # writes curves.png
"""
import gzip
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
V8 = os.path.join(HERE, "..", "2026-12-02-lsn-v8-edge-loss")


def load(path):
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def smooth(xs, k=50):  # logged every 10 steps: 50 entries = 500 steps
    return [sum(xs[max(0, i - k + 1):i + 1]) / len(xs[max(0, i - k + 1):i + 1]) for i in range(len(xs))]


runs = [("ctrl: fp32, 8k", os.path.join(V8, "train_log_v8ctrl.jsonl.gz"), "k-"),
        ("bf16ctrl: bf16, 8k", os.path.join(HERE, "train_log_bf16ctrl.jsonl.gz"), "C0-"),
        ("bf16tail: bf16 + float32 tail, 8k", os.path.join(HERE, "train_log_bf16tail.jsonl.gz"), "C1--"),
        ("bf16long: bf16, 20k (v9)", os.path.join(HERE, "train_log_bf16long.jsonl.gz"), "C2-")]
fig, axs = plt.subplots(1, 2, figsize=(11, 4))
for label, path, style in runs:
    log = load(path)
    t0 = log[0]["time"]
    axs[0].plot([(r["time"] - t0) / 60 for r in log], [10.0 * v for v in smooth([r["recon_rel"] for r in log])],
                style, lw=1, label=label)
axs[0].set_xlabel("wall-clock minutes (1 CPU thread, two runs side by side)")
axs[0].set_ylabel("%")
axs[0].set_title("recomposition error on training crops (500-step mean)", fontsize=10)
pts = [(0, "v6", os.path.join(HERE, "..", "2026-12-02-lsn-v6-texture", "eval_v6_wide.json")),
       (8000, "ctrl fp32", os.path.join(V8, "eval_v8ctrl_wide.json")),
       (8000, "bf16", os.path.join(HERE, "eval_bf16ctrl_wide.json")),
       (8000, "bf16 + tail", os.path.join(HERE, "eval_bf16tail_wide.json")),
       (20000, "bf16 20k (v9)", os.path.join(HERE, "eval_bf16long_wide.json")),
       (30000, "v9 + 10k (v10)", os.path.join(HERE, "eval_v9cont_wide.json"))]
for i, (s, name, path) in enumerate(pts):
    v = 100 * json.load(open(path))["recomposition_rel"]
    axs[1].plot(s, v, "o")
    dy = {1: -14, 2: 10, 3: -2}.get(i, 4)  # the three 8k points sit on top of each other
    axs[1].annotate(f"{name} {v:.3f}", (s, v), textcoords="offset points", xytext=(7, dy), fontsize=8)
axs[1].axhline(1.0, color="tab:green", ls="--", lw=1, label="target 1 %")
axs[1].set_xlabel("fine-tuning steps from v6 (each run its own cosine schedule; v10 = v9 + a second one)")
axs[1].set_ylabel("%")
axs[1].set_title("held-out recomposition error, wide set (32 images)", fontsize=10)
for ax in axs:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(HERE, "curves.png"), dpi=110)
print("wrote", os.path.join(HERE, "curves.png"))
