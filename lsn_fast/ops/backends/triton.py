"""The ``triton`` backend: the fused synthesis operator as Triton kernels (lsn_fast/ops/kernels/synthesize.py).

``OPS["synthesize"]`` has exactly the signature of :func:`lsn_fast.reference.synthesize_reference`
(docs/kernel_contract.md). Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``
(the registry only offers it there in that case; tests use it).
"""

from __future__ import annotations

import torch

from lsn_fast.ops.kernels.synthesize import launch
from lsn_fast.ops.schema import prepare


def synthesize_triton(soft, upper, lower, index, disp, params, **kwargs) -> torch.Tensor:
    """Fused synthesis in Triton; the signature of :func:`lsn_fast.physics.reference.synthesize_reference`."""
    return launch(prepare(soft, upper, lower, index, disp, params, **kwargs))


OPS = {"synthesize": synthesize_triton, "synthesize_args": launch}
