"""Bone moves: the one vocabulary and the tensor-level moves every renderer shares.

A *move* opens (positive) or closes (negative) the joint by ``shift`` px along the joint axis.
It is described by three words, the same everywhere (``synthesize``, ``compose``,
``JSWStream``, ``LayerStack.shifted``, the five-percent experiment, the CLI):

* ``bone``: ``"upper"`` moves along the axis, ``"lower"`` against it, ``"both"`` half each
  (the gap stays centred in the crop);
* ``moves``: ``"subpixel"`` (the exact shift, resampled with ``interp``) or ``"integer"``
  (rounded to whole pixels, :func:`whole_pixel_moves`: an exact copy of the bone layer, labelled
  with the JSW the move reaches);
* ``interp``: ``"linear"`` or ``"cubic"`` (Keys, a = −0.5), for sub-pixel moves.

Shapes: layers (B,H,W); shifts (B,) px; axes and displacements (B,2) px as (dy, dx).
"""

from __future__ import annotations

import warnings

import torch

from lsn_fast.physics.reference import INTERP_MODES, translate
from lsn_fast.utils.validation import check_positive_float

BONES = ("upper", "lower", "both")
MOVES = ("subpixel", "integer")
INTERPS = tuple(INTERP_MODES)
# the five-percent experiment's old single word ("linear"/"cubic" meant a sub-pixel move)
_LEGACY_MOVES = {"linear": ("subpixel", "linear"), "cubic": ("subpixel", "cubic")}

__all__ = ["BONES", "MOVES", "INTERPS", "check_bone", "check_moves", "whole_pixel_moves", "split_whole_pixel",
           "whole_pixel_copy", "bone_displacements", "move_bones"]


def check_bone(bone) -> str:
    """``bone`` if it is ``"upper"``, ``"lower"`` or ``"both"``; else ``ValueError`` naming it."""
    if bone not in BONES:
        raise ValueError(f"bone: expected 'upper', 'lower' or 'both', got {bone!r}")
    return bone


def check_moves(moves, interp="linear") -> tuple[str, str]:
    """Normalize a ``(moves, interp)`` pair; returns it, or raises ``ValueError`` naming the argument.

    ``moves="linear"`` / ``"cubic"`` (the five-percent experiment's former vocabulary) still read
    as ``("subpixel", that interp)`` with a ``DeprecationWarning``; giving such a word together
    with a different ``interp`` is an error.
    """
    if interp not in INTERP_MODES:
        raise ValueError(f"interp: expected 'linear' or 'cubic', got {interp!r}")
    if moves in _LEGACY_MOVES:
        new, implied = _LEGACY_MOVES[moves]
        if interp not in ("linear", implied):
            raise ValueError(f"moves, interp: moves={moves!r} means sub-pixel {implied} moves, but interp={interp!r}")
        warnings.warn(f"moves={moves!r} is deprecated: use moves='subpixel', interp={implied!r}", DeprecationWarning,
                      stacklevel=3)
        return new, implied
    if moves not in MOVES:
        raise ValueError(f"moves: expected one of {list(MOVES)}, got {moves!r}")
    return moves, interp


def whole_pixel_moves(jsw0_mm: torch.Tensor, target_mm: torch.Tensor, axis: torch.Tensor, spacing_mm: float):
    """Whole-pixel bone moves towards target JSWs, and the JSW each move reaches.

    The move along the joint axis that would reach ``target_mm`` is rounded per component to
    whole pixels ``d``: the moved bone is then an exact copy of its layer (no interpolation blur
    of its edge, or of noise and texture carried in it), and the JSW changes by
    ``(d·axis)·spacing_mm``. The rest of the rounding (≤ 0.5 px per component) slides the bone
    across the axis, which leaves the JSW as measured within ~0.002 mm on phantoms. A move that
    would close the joint below 0 is rounded one pixel wider.

    Args:
        jsw0_mm: (B,) mm, the JSW before the move.
        target_mm: (B,) mm, the JSW wanted.
        axis: (B,2) unit vectors (dy, dx) along which a positive move opens the joint.
        spacing_mm: pixel spacing, mm.
    Returns:
        ``(reached (B,) mm >= 0, d (B,2) px)``: ``d`` holds whole numbers, the displacement of the
        upper bone that opens the joint by ``reached − jsw0_mm`` (the lower bone moves by ``−d``;
        both bones: :func:`split_whole_pixel`).

    Checks types, shapes and ``spacing_mm`` (no device sync); the values are the caller's.
    """
    for name, t in (("jsw0_mm", jsw0_mm), ("target_mm", target_mm), ("axis", axis)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {type(t).__name__}"
                            + (f" of {t.dtype}" if isinstance(t, torch.Tensor) else ""))
    if jsw0_mm.ndim != 1 or target_mm.shape != jsw0_mm.shape:
        raise ValueError(f"jsw0_mm, target_mm: expected two (B,) tensors, got {tuple(jsw0_mm.shape)} and "
                         f"{tuple(target_mm.shape)}")
    if axis.shape != (jsw0_mm.shape[0], 2):
        raise ValueError(f"axis: expected ({jsw0_mm.shape[0]}, 2) unit vectors (dy, dx), got {tuple(axis.shape)}")
    spacing_mm = check_positive_float(spacing_mm, "spacing_mm")
    s = (target_mm - jsw0_mm) / spacing_mm
    d = torch.round(s[:, None] * axis)
    reached = jsw0_mm + (d * axis).sum(dim=1) * spacing_mm
    wider = reached < 0
    if bool(wider.any()):
        d = torch.where(wider[:, None], torch.round((s + 1)[:, None] * axis), d)
        reached = jsw0_mm + (d * axis).sum(dim=1) * spacing_mm
    return reached.clamp_min(0.0), d


def split_whole_pixel(disp: torch.Tensor):
    """Split whole-pixel moves ``disp`` (B,2) px between the bones (``bone="both"``): the upper
    bone takes ``floor(d/2)`` and the lower bone the rest, against it, so the gap stays centred
    within half a pixel and the JSW keeps its 1-px steps. Returns ``(upper (B,2), lower (B,2))``:
    move the upper bone by ``upper`` and the lower bone by ``−lower``."""
    if not isinstance(disp, torch.Tensor) or disp.ndim != 2 or disp.shape[1] != 2:
        raise ValueError(f"disp: expected a (B,2) tensor of whole-pixel moves, got "
                         f"{tuple(disp.shape) if isinstance(disp, torch.Tensor) else type(disp).__name__}")
    up = torch.div(disp, 2, rounding_mode="floor")
    return up, disp - up


def whole_pixel_copy(layer: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``layer`` (B,H,W) translated by whole pixels ``disp`` (B,2) (dy, dx), edge-clamped: one
    gather, the same values as :func:`lsn_fast.reference.translate` (2.3× faster on CPU), in the
    layer's dtype."""
    B, H, W = layer.shape
    d = disp.to(device=layer.device).round().long()
    ys = (torch.arange(H, device=layer.device)[None, :] - d[:, 0:1]).clamp(0, H - 1)
    xs = (torch.arange(W, device=layer.device)[None, :] - d[:, 1:2]).clamp(0, W - 1)
    return layer[torch.arange(B, device=layer.device)[:, None, None], ys[:, :, None], xs[:, None, :]]


def bone_displacements(shift: torch.Tensor, axis: torch.Tensor, bone: str, whole: torch.Tensor | None = None):
    """The displacement of each bone layer for a move.

    Args:
        shift: (B,) px along ``axis`` (positive opens); unused where ``whole`` is given.
        axis: (B,2) unit vectors (dy, dx).
        bone: ``"upper"``, ``"lower"`` or ``"both"``.
        whole: (B,2) whole-pixel move of the upper bone (:func:`whole_pixel_moves`), or None for
            the exact sub-pixel move ``shift · axis``.
    Returns:
        ``(upper (B,2) px or None, lower (B,2) px or None)``: None where that bone stays.
    """
    full = shift[:, None] * axis if whole is None else whole
    if check_bone(bone) == "upper":
        return full, None
    if bone == "lower":
        return None, -full
    if whole is not None:
        up, low = split_whole_pixel(whole)
        return up, -low
    return 0.5 * full, -0.5 * full


def move_layer(layer: torch.Tensor, disp: torch.Tensor, interp: str, exact: bool) -> torch.Tensor:
    """``layer`` (B,H,W) moved by ``disp`` (B,2) px, in its dtype: a gather for whole-pixel moves
    (``exact``), else :func:`lsn_fast.reference.translate` in float32."""
    if exact:
        return whole_pixel_copy(layer, disp)
    return translate(layer, disp, interp=interp).to(layer.dtype)


def move_bones(upper: torch.Tensor, lower: torch.Tensor, shift: torch.Tensor, axis: torch.Tensor, *,
               bone: str = "upper", interp: str = "linear", whole: torch.Tensor | None = None):
    """Both bone layers (B,H,W) after a move (:func:`bone_displacements`), in PyTorch.

    Returns ``(upper, lower)`` (B,H,W), in their dtypes; a bone that does not move is returned as is.
    """
    up, low = bone_displacements(shift, axis, bone, whole)
    exact = whole is not None
    return (upper if up is None else move_layer(upper, up, interp, exact),
            lower if low is None else move_layer(lower, low, interp, exact))
