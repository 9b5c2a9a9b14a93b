"""Input checks shared by the public API. Every error names the offending argument.

Kernels never validate: the API layer calls these before any launch, so native code only ever
sees well-formed, in-bounds inputs.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_tensor(
    x,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    dtypes: Sequence[torch.dtype] | None = FLOAT_DTYPES,
    finite: bool = True,
    nonnegative: bool = False,
    nonempty: bool = True,
) -> torch.Tensor:
    """Check one tensor argument and return it unchanged.

    Raises ``TypeError`` for a non-tensor or a wrong dtype and ``ValueError`` for a wrong rank,
    an empty tensor, NaN/Inf or negative values; every message starts with the argument's name.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if dtypes is not None and x.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: dtype {str(x.dtype).replace('torch.', '')} is not supported (use {allowed})")
    if ndim is not None:
        allowed_nd = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed_nd:
            raise ValueError(f"{name}: expected {' or '.join(map(str, allowed_nd))} dimensions, got shape {tuple(x.shape)}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name}: empty tensor (shape {tuple(x.shape)})")
    if x.numel() and (finite or nonnegative):
        with torch.no_grad():
            if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name}: contains NaN or Inf")
            if nonnegative and bool((x < 0).any()):
                raise ValueError(f"{name}: contains negative values (min {float(x.min()):.4g}); layers are attenuation line integrals and must be >= 0")
    return x


def check_int(v, name: str, minimum: int | None = 1) -> int:
    """An integer (a Python or NumPy int, not a bool) >= ``minimum`` (None: any), as a Python int:
    ``TypeError`` for another type, ``ValueError`` below the minimum."""
    want = "an int" + ("" if minimum is None else f" >= {minimum}")
    if isinstance(v, bool) or not isinstance(v, Integral):
        raise TypeError(f"{name}: expected {want}, got {v!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: expected {want}, got {v!r}")
    return int(v)


def check_positive_float(v, name: str, *, allow_zero: bool = False) -> float:
    """A finite real scalar > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name}: expected a scalar, got shape {tuple(v.shape)}")
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'} and finite, got {v}")
    return v


def per_sample(
    v,
    name: str,
    batch: int,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    min_value: float | None = None,
    min_inclusive: bool = True,
    max_value: float | None = None,
) -> torch.Tensor:
    """Broadcast a scalar or a (B,) / (1,) tensor/sequence to a (B,) tensor on ``device``.

    Used for every per-sample parameter (shifts, JSW targets, detector settings).
    """
    if isinstance(v, bool):
        raise TypeError(f"{name}: expected a number or a tensor, got bool")
    if isinstance(v, (int, float)):
        if math.isfinite(v) and abs(v) > torch.finfo(dtype).max:  # before torch.full overflows
            raise ValueError(f"{name}: {v:g} does not fit in {dtype}")
        t = torch.full((batch,), float(v), device=device, dtype=dtype)
    else:
        if not isinstance(v, torch.Tensor):
            try:
                v = torch.as_tensor(v, dtype=dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{name}: expected a number, a sequence or a tensor ({e})") from None
        if v.ndim == 0:
            v = v.reshape(1)
        if v.ndim != 1 or v.shape[0] not in (1, batch):
            raise ValueError(f"{name}: expected a scalar or shape ({batch},), got {tuple(v.shape)}")
        if v.device != device and v.device.type != "cpu" and device.type != v.device.type:
            raise ValueError(f"{name}: on device {v.device}, but the layers are on {device}")
        t = v.to(device=device, dtype=dtype).expand(batch)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or Inf")
    if min_value is not None:
        bad = (t < min_value) if min_inclusive else (t <= min_value)
        if bool(bad.any()):
            op = ">=" if min_inclusive else ">"
            raise ValueError(f"{name}: every value must be {op} {min_value}, got min {float(t.min()):.6g}")
    if max_value is not None and bool((t > max_value).any()):
        raise ValueError(f"{name}: every value must be <= {max_value:g}, got max {float(t.max()):.6g}")
    return t
