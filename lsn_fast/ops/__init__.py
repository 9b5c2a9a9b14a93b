"""The fused synthesis operator ``torch.ops.lsn_fast.synthesize`` and its backends.

* :mod:`.op` — the ``torch.library`` registration (fake kernel, autograd);
* :mod:`.registry` — backend registry (``backends()``, ``register_backend``, ``resolve``);
* :mod:`.backends` — ``cpu`` (C++/OpenMP), ``cuda`` (CUDA C++), ``triton``; each registers itself;
* :mod:`.kernels` — the Triton kernels (synthesis and the LSN's fused layers).
"""

from lsn_fast.ops.op import seed_to_signed, synthesize_op

__all__ = ["synthesize_op", "seed_to_signed"]
