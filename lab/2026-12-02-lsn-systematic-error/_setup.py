"""Shared set-up of this folder's scripts: the 32 `wide` held-out phantoms that `eval-lsn` scores
(seed 10 000, 256² px), their detector, the shipped v6 weights, and the per-sample L2 norm."""
import torch

import lsn_fast as lf
from lsn_fast.evaluate import _heldout

N = 32


def nrm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of a (B, ...) tensor."""
    return t.flatten(1).norm(dim=1)


def wide_v6():
    """``(stack, detector, images, model)`` on one thread, v6 in eval mode."""
    torch.set_num_threads(1)
    st, info, images = _heldout(N, 256, 10_000, "wide")
    return st, info["detector"], images, lf.LSN.pretrained().eval()
