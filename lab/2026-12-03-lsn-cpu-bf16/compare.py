"""Table of the eval JSONs: v6 (shipped before v9), the fp32 8k-step fine-tune `ctrl` (2026-12-02), and this
session's bf16 fine-tunes (same flags + `--amp bf16`, with and without `--float32-tail`; and 20k steps; and 10k more from the 20k run).

    python lab/2026-12-03-lsn-cpu-bf16/compare.py > lab/2026-12-03-lsn-cpu-bf16/compare.md
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
RUNS = [("v6 (shipped before)", os.path.join(RES, "2026-12-02-lsn-v6-texture", "eval_v6_{}.json")),
        ("ctrl: fp32, 8k steps", os.path.join(RES, "2026-12-02-lsn-v8-edge-loss", "eval_v8ctrl_{}.json")),
        ("bf16ctrl: bf16, 8k steps", os.path.join(HERE, "eval_bf16ctrl_{}.json")),
        ("bf16tail: bf16 + float32 tail, 8k", os.path.join(HERE, "eval_bf16tail_{}.json")),
        ("bf16long: bf16, 20k steps (v9)", os.path.join(HERE, "eval_bf16long_{}.json")),
        ("v9cont: v9 + 10k bf16 steps (v10)", os.path.join(HERE, "eval_v9cont_{}.json"))]
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

print(eval_table(RUNS))
