"""Tables of the eval JSONs at 256 px and at 128 px: the shipped v12 against two 5,000-step
fine-tunes with the evaluation's relative-L2 recomposition loss weighted 4x ("A": 256 px only;
"B": one step in four on a whole 128 px phantom).

    python lab/2026-12-03-lsn-recon-weight/compare.py > lab/2026-12-03-lsn-recon-weight/compare.md
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
from lsn_eval_table import eval_table  # noqa: E402

V12 = os.path.join(RES, "2026-12-03-lsn-v11short")
for size, pre in ((256, "eval"), (128, "eval128")):
    what = "the sets the targets are stated on" if size == 256 else "the five-percent experiment's field of view"
    print(f"{'' if size == 256 else chr(10)}## {size} px (`eval-lsn --size {size}`: {what})\n")
    print(eval_table([("v12 (shipped)", os.path.join(V12, f"{pre}_v11short_{{}}.json")),
                      ("A: v12 + 5k steps, recon_rel=4", os.path.join(HERE, f"{pre}_rwA_{{}}.json")),
                      ("B: A + one step in four at 128 px", os.path.join(HERE, f"{pre}_rwB_{{}}.json"))]))
