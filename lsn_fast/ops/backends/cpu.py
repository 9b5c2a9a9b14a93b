"""The ``cpu`` backend: the fused synthesis operator in C++17 + OpenMP (csrc/cpu/synthesize.cpp).

``OPS["synthesize"]`` has exactly the signature of
:func:`lsn_fast.reference.synthesize_reference` (docs/kernel_contract.md). The API layer has
validated them (:mod:`lsn_fast.ops.schema`); ``launch`` only allocates the output and hands the
raw pointers to C++. Bank layers may be strided views: the kernel reads them through their
strides, so a large bank is never copied.

The kernel uses ``torch.get_num_threads()`` OpenMP threads and releases the GIL.
"""

from __future__ import annotations

import torch

try:
    from lsn_fast import _C
except ImportError as e:  # pragma: no cover - the extension is always built by setup.py
    raise ImportError(f"lsn_fast._C (the C++ extension) is not built: {e}") from e

if not hasattr(_C, "synthesize"):
    raise ImportError("lsn_fast._C lacks the synthesize kernel: rebuild with `pip install -e . --no-build-isolation`")

from lsn_fast.ops.schema import DTYPE_CODES, INTERP_CODES, SynthesizeArgs, prepare


def launch(a: SynthesizeArgs) -> torch.Tensor:
    """Run the C++ kernel on validated arguments (:func:`lsn_fast.ops.schema.prepare`). Returns (B,1,H,W)."""
    if a.soft.device.type != "cpu":
        raise ValueError(f"soft: the cpu backend needs CPU tensors, got device {a.soft.device}")
    _, H, W = a.shape
    B = a.batch
    out = torch.empty((B, 1, H, W), dtype=a.out_dtype)
    _C.synthesize(
        a.soft.data_ptr(), a.upper.data_ptr(), a.lower.data_ptr(),
        tuple(a.soft.stride()), tuple(a.upper.stride()), tuple(a.lower.stride()),
        DTYPE_CODES[a.soft.dtype],
        a.index.data_ptr(), a.disp.data_ptr(),
        0 if a.params is None else a.params.data_ptr(),
        0 if a.params is None else a.sample_index.data_ptr(),
        B, H, W, a.move_lower, a.seed, a.noise_mode, a.output_mode, INTERP_CODES[a.interp],
        a.min_counts, out.data_ptr(), DTYPE_CODES[a.out_dtype], torch.get_num_threads(),
    )
    return out


def synthesize_cpu(soft, upper, lower, index, disp, params, **kwargs) -> torch.Tensor:
    """Fused synthesis on CPU; the signature of :func:`lsn_fast.physics.reference.synthesize_reference`.
    Returns (B,1,H,W)."""
    return launch(prepare(soft, upper, lower, index, disp, params, **kwargs))


OPS = {"synthesize": synthesize_cpu, "synthesize_args": launch}
