"""The ``cpu`` backend: the fused synthesis operator in C++17 + OpenMP (csrc/cpu/synthesize.cpp).

``OPS["synthesize"]`` has exactly the signature of
:func:`lsn_fast.reference.synthesize_reference` (docs/kernel_contract.md). The API layer has
validated values already; this wrapper only makes sure the raw pointers it hands to C++ are safe
(CPU tensors, matching shapes, supported dtypes, in-range indices are the caller's contract) and
allocates the output. Bank layers may be strided views: the kernel reads them through their
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

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_INTERP = {"linear": 0, "cubic": 1}


def _layer(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
        raise ValueError(f"{name}: the cpu backend needs CPU tensors")
    if t.ndim != 3:
        raise ValueError(f"{name}: expected (N,H,W), got {tuple(t.shape)}")
    if t.dtype not in _DTYPE_CODES:  # float64 banks: the reference computes in float32 too
        t = t.to(torch.float32)
    if any(s < 0 for s in t.stride()):  # pragma: no cover - torch has no negative strides today
        t = t.contiguous()
    return t


def synthesize_cpu(
    soft: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    index: torch.Tensor,
    disp: torch.Tensor,
    params: torch.Tensor | None,
    *,
    move_lower: bool = False,
    seed: int = 0,
    sample_index: torch.Tensor | None = None,
    noise_mode: int = 2,
    output_mode: int = 0,
    interp: str = "linear",
    min_counts: float = 0.5,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fused synthesis on CPU; see :func:`lsn_fast.reference.synthesize_reference`. Returns (B,1,H,W)."""
    soft, upper, lower = _layer(soft, "soft"), _layer(upper, "upper"), _layer(lower, "lower")
    if not (soft.shape == upper.shape == lower.shape):
        raise ValueError(f"soft/upper/lower: shapes differ: {tuple(soft.shape)}, {tuple(upper.shape)}, {tuple(lower.shape)}")
    if not (soft.dtype == upper.dtype == lower.dtype):
        upper, lower = upper.to(soft.dtype), lower.to(soft.dtype)
    N, H, W = soft.shape
    index = torch.as_tensor(index).to(device="cpu", dtype=torch.int64).reshape(-1).contiguous()
    B = index.shape[0]
    if B < 1 or N < 1 or H < 1 or W < 1:
        raise ValueError(f"empty batch or bank: B={B}, bank {tuple(soft.shape)}")
    if bool(((index < 0) | (index >= N)).any()):  # out-of-range would read outside the bank
        raise ValueError(f"index: values must lie in [0, {N})")
    disp = torch.as_tensor(disp).to(device="cpu", dtype=torch.float32).contiguous()
    if disp.shape != (B, 2):
        raise ValueError(f"disp: expected ({B}, 2), got {tuple(disp.shape)}")
    if params is not None:
        params = params.to(device="cpu", dtype=torch.float32).contiguous()
        if params.shape != (B, 5):
            raise ValueError(f"params: expected ({B}, 5), got {tuple(params.shape)}")
        if sample_index is None:
            sample_index = torch.arange(B, dtype=torch.int64)
        sample_index = torch.as_tensor(sample_index).to(device="cpu", dtype=torch.int64).reshape(-1).contiguous()
        if sample_index.shape[0] != B:
            raise ValueError(f"sample_index: expected ({B},), got {tuple(sample_index.shape)}")
    if out_dtype not in _DTYPE_CODES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype}")
    if interp not in _INTERP:
        raise ValueError(f"interp: expected 'linear' or 'cubic', got {interp!r}")
    if noise_mode not in (0, 1, 2) or output_mode not in (0, 1):
        raise ValueError(f"noise_mode/output_mode out of range: {noise_mode}, {output_mode}")
    seed = int(seed) % (1 << 64)
    out = torch.empty((B, 1, H, W), dtype=out_dtype)
    _C.synthesize(
        soft.data_ptr(), upper.data_ptr(), lower.data_ptr(),
        tuple(soft.stride()), tuple(upper.stride()), tuple(lower.stride()),
        _DTYPE_CODES[soft.dtype],
        index.data_ptr(), disp.data_ptr(),
        0 if params is None else params.data_ptr(),
        0 if params is None else sample_index.data_ptr(),
        B, H, W, bool(move_lower), seed, int(noise_mode), int(output_mode), _INTERP[interp],
        float(min_counts), out.data_ptr(), _DTYPE_CODES[out_dtype], torch.get_num_threads(),
    )
    return out


OPS = {"synthesize": synthesize_cpu}
