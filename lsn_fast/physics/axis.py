"""The joint axis: unit vectors ``(dy, dx)`` from the joint towards the proximal bone, and tilt angles."""

from __future__ import annotations

import math

import torch


def axis_from_angle(angle_deg, batch: int | None = None) -> torch.Tensor:
    """Unit axis vectors ``(dy, dx)`` from tilt angles in degrees.

    ``angle_deg`` is the finger axis' tilt from vertical; positive turns the proximal end towards
    +x (clockwise on screen). ``0`` gives ``(-1, 0)``.

    Args:
        angle_deg: float or tensor (B,), degrees.
        batch: broadcast a scalar to this batch size.
    Returns:
        Tensor (B, 2) float32.
    """
    try:
        a = torch.as_tensor(angle_deg, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"angle_deg: expected a number or a (B,) tensor of degrees ({e})") from None
    if not bool(torch.isfinite(a).all()):
        raise ValueError("angle_deg: contains NaN or Inf")
    if a.ndim == 0:
        a = a.reshape(1).expand(batch or 1)
    r = torch.deg2rad(a)
    return torch.stack([-torch.cos(r), torch.sin(r)], dim=-1)


def angle_from_axis(axis: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_from_angle`: (B,2) unit vectors -> (B,) tilt in degrees."""
    return torch.rad2deg(torch.atan2(axis[..., 1], -axis[..., 0]))


def normalize_axis(axis, batch: int, device) -> torch.Tensor | None:
    """``axis`` as given by a user (None, an angle in degrees, a (2,) or (B,2) (dy, dx) vector) ->
    (B,2) float32 unit vectors on ``device``, or None. ``ValueError`` naming ``axis`` otherwise."""
    if axis is None:
        return None
    if isinstance(axis, (int, float)) and not isinstance(axis, bool):
        if not math.isfinite(axis):
            raise ValueError(f"axis: an angle must be finite degrees, got {axis!r}")
        return axis_from_angle(float(axis), batch).to(device)
    a = torch.as_tensor(axis, dtype=torch.float32)
    if a.ndim == 1 and a.shape[0] == 2:
        a = a.unsqueeze(0).expand(batch, 2)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] not in (1, batch):
        raise ValueError(f"axis: expected an angle in degrees, a (2,) or a ({batch}, 2) tensor of (dy, dx), got shape {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("axis: contains NaN or Inf")
    n = a.norm(dim=-1, keepdim=True)
    if bool((n < 1e-6).any()):
        raise ValueError("axis: zero-length axis vector")
    return (a / n).expand(batch, 2).contiguous().to(device)
