"""The ``triton`` backend: the fused synthesis operator as Triton kernels (kernels/synthesize.py).

``OPS["synthesize"]`` has exactly the signature of :func:`lsn_fast.reference.synthesize_reference`
(docs/kernel_contract.md). Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``
(the registry only offers it there in that case; tests use it).
"""

from __future__ import annotations

from lsn_fast.ops.kernels.synthesize import synthesize_triton

OPS = {"synthesize": synthesize_triton}
