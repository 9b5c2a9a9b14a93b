"""Table of the eval JSONs: v10 (shipped before) and the v10long candidate (a new 60,000-step bf16
schedule from v10, cut off by wall time; `PREDICTION.md` holds the shipping rule written before).

    python lab/2026-12-03-lsn-v10long/compare.py > lab/2026-12-03-lsn-v10long/compare.md
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
RUNS = [("v10 (shipped before)", os.path.join(RES, "2026-12-03-lsn-cpu-bf16", "eval_v9cont_{}.json")),
        ("v10long: v10 + bf16 steps, new schedule", os.path.join(HERE, "eval_v10long_{}.json"))]
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

print(eval_table(RUNS))
