"""Where does (c3)'s extra JSW bias come from? Train one arm as the committed rows do, keep the
model and its predictions (diagnostic only; CPU, 1 thread).

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-jsw-layer-aux/diag_train.py ARM SEED OUT_DIR
    # ARM: a | c3

Writes ``OUT_DIR/diag_{ARM}_s{SEED}.pt``: the model's state dict; predictions and truth on the
test set and on every training image (``low`` marks the 5 % labelled ones); each test image's
detector parameters are not kept by the experiment, so only JSW and tilt-free summaries follow.
"""
import os
import sys
import time

import torch

import lsn_fast as lf
from lsn_fast.tasks.jsw_regression import predict_jsw

from _shared import WEIGHTS, longer  # noqa: E402  (this folder; on sys.path when run as a script)

if __name__ == "__main__":
    arm, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    cfg = longer.config(4500)
    t = time.perf_counter()
    st = longer.seed_state(cfg, seed, lf.LSN.pretrained(WEIGHTS))
    print(f"data + separation {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    m = longer.train_arm(cfg, seed, st, "jsw", {"a": longer.ARM_A, "c3": longer.ARM_C3}[arm])
    pt, ptr = predict_jsw(m, st["test"]["base"]), predict_jsw(m, st["train"]["base"])
    low = torch.zeros(ptr.numel(), dtype=torch.bool)
    low[st["low"]] = True
    mae = float((pt - st["test"]["jsw"]).abs().mean())
    print(f"{arm} seed {seed}: test MAE {mae:.4f} mm, bias {float((pt - st['test']['jsw']).mean()):+.4f} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    os.makedirs(out, exist_ok=True)
    torch.save({"state": m.state_dict(), "test_pred": pt, "test_jsw": st["test"]["jsw"], "train_pred": ptr,
                "train_jsw": st["train"]["jsw"], "low": low}, os.path.join(out, f"diag_{arm}_s{seed}.pt"))
