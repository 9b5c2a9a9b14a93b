"""Table of the eval JSONs: v6 (shipped before), v8 ctrl (more steps), v8 edge (+ recon_edge), and
the two lower-peak-lr fine-tunes, and the weight average of the three edge-free fine-tunes (soup.py).

    python lab/2026-12-02-lsn-v8-edge-loss/compare.py > lab/2026-12-02-lsn-v8-edge-loss/compare.md
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = [("v6 (before)", os.path.join(HERE, "..", "2026-12-02-lsn-v6-texture", "eval_v6_{}.json")),
        ("v8 ctrl: 8k more steps", os.path.join(HERE, "eval_v8ctrl_{}.json")),
        ("v8 edge: same + recon_edge=2", os.path.join(HERE, "eval_v8edge_{}.json")),
        ("v8 lr 1e-4: 4k more steps", os.path.join(HERE, "eval_v8lr1e-4_{}.json")),
        ("v8 lr 5e-5: 4k more steps", os.path.join(HERE, "eval_v8lr5e-5_{}.json")),
        ("soup: mean of ctrl, lr 1e-4, lr 5e-5", os.path.join(HERE, "eval_soup3_{}.json"))]
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

print(eval_table(RUNS))
