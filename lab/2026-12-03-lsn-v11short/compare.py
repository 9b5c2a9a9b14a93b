"""Tables of the eval JSONs: v11 (shipped before) and the v11short candidate (v11 + a complete
22,000-step bf16 schedule; `PREDICTION.md` holds the shipping rule written before), at 256 px
(the sets the targets are stated on) and at 128 px (the five-percent experiment's field of view).

    python lab/2026-12-03-lsn-v11short/compare.py > lab/2026-12-03-lsn-v11short/compare.md
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

print("## 256 px\n")
print(eval_table([("v11 (shipped before)", os.path.join(RES, "2026-12-03-lsn-v10long", "eval_v10long_{}.json")),
                  ("v11short = v12: v11 + 22k steps", os.path.join(HERE, "eval_v11short_{}.json"))]))
print("\n## 128 px\n")
print(eval_table([("v11 (shipped before)", os.path.join(RES, "2026-12-03-lsn-small-fov", "eval128_v11_{}.json")),
                  ("v11short = v12: v11 + 22k steps", os.path.join(HERE, "eval128_v11short_{}.json"))]))
