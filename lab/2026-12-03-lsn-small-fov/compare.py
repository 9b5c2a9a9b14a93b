"""Tables of the eval JSONs at 256 px and at 128 px: v11 against the first small-field-of-view
fine-tune ("fov": v11 + 8,000 steps, every other one on a whole 128 px phantom), and v12 against
the second ("fov2": v12 + 6,000 steps at half the lr, one step in three at 128 px).

    python lab/2026-12-03-lsn-small-fov/compare.py > lab/2026-12-03-lsn-small-fov/compare.md
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

print("## 256 px (`eval-lsn --size 256`, the sets the targets are stated on)\n")
print(eval_table([("v11", os.path.join(RES, "2026-12-03-lsn-v10long", "eval_v10long_{}.json")),
                  ("fov: v11 + 8k steps, half at 128 px", os.path.join(HERE, "eval_fov_{}.json")),
                  ("v12 (shipped)", os.path.join(RES, "2026-12-03-lsn-v11short", "eval_v11short_{}.json")),
                  ("fov2: v12 + 6k steps, a third at 128 px", os.path.join(HERE, "eval_fov2_{}.json"))]))
print("\n## 128 px (`eval-lsn --size 128`: the five-percent experiment's field of view)\n")
print(eval_table([("v11", os.path.join(HERE, "eval128_v11_{}.json")),
                  ("fov: v11 + 8k steps, half at 128 px", os.path.join(HERE, "eval128_fov_{}.json")),
                  ("v12 (shipped)", os.path.join(RES, "2026-12-03-lsn-v11short", "eval128_v11short_{}.json")),
                  ("fov2: v12 + 6k steps, a third at 128 px", os.path.join(HERE, "eval128_fov2_{}.json"))]))
