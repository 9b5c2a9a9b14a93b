"""Does test-time flip averaging remove v6's systematic recomposition error? The 32 `wide`
held-out images (the eval-lsn set), shipped v6, denoised image D = S + U + L averaged over
{identity, h-flip, v-flip, both}; relative L2 error against the clean attenuation, in %.

    OMP_NUM_THREADS=1 python lab/2026-12-02-lsn-v8-edge-loss/flip_tta.py > flip_tta.txt
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "2026-12-02-lsn-systematic-error"))
from _setup import nrm, wide_v6  # noqa: E402

st, _, images, model = wide_v6()
clean = st.attenuation()


def denoised(x, dims):
    with torch.no_grad():
        d = model(x.flip(dims) if dims else x, validate=False).layers.sum(1)
    return d.flip(dims) if dims else d


def rel(d):
    return 100 * float((nrm(d - clean) / nrm(clean)).mean())


outs = {name: denoised(images, dims) for name, dims in
        (("identity", ()), ("h-flip", (-1,)), ("v-flip", (-2,)), ("both flips", (-1, -2)))}
for name, d in outs.items():
    print(f"{name:>12}: {rel(d):.3f} %")
print(f"{'mean id+h':>12}: {rel((outs['identity'] + outs['h-flip']) / 2):.3f} %")
print(f"{'mean of 4':>12}: {rel(sum(outs.values()) / 4):.3f} %")
