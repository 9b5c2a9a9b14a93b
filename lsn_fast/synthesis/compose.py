"""Public synthesis API: validate, resolve the shift, dispatch to a backend.

* :func:`compose` — one stack in, one image per sample out (DESIGN.md §4).
* :func:`synthesize` — the fused bank operator: pick entries of a bank, move a bone to a new JSW
  (or by a shift), composite, detector chain; returns the images and their exact JSW labels.
"""

from __future__ import annotations

import torch

from lsn_fast.physics.detector import Detector
from lsn_fast.physics.layers import LayerStack
from lsn_fast.physics.moves import MOVES, check_bone, check_moves, split_whole_pixel, whole_pixel_moves
from lsn_fast.physics.philox import split_seed
from lsn_fast.synthesis.render import render
from lsn_fast.utils.validation import check_tensor, per_sample

_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
__all__ = ["compose", "synthesize", "whole_pixel_moves", "split_whole_pixel", "MOVES"]


def _check_common(detector, seed, out_dtype, bone):
    if detector is not None and not isinstance(detector, Detector):
        raise TypeError(f"detector: expected lsn_fast.Detector or None, got {type(detector).__name__}")
    split_seed(seed)  # validates type and range
    if out_dtype not in _OUT_DTYPES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype}")
    if out_dtype == torch.float16 and detector is not None and detector.output == "counts":
        # counts reach n0·(1 + scatter) plus noise; float16 stops at 65504 (then inf)
        peak = float(torch.as_tensor(detector.n0, dtype=torch.float32).max()) * (
            1.0 + float(torch.as_tensor(detector.scatter, dtype=torch.float32).max()))
        if peak > 32768.0:
            raise ValueError(f"out_dtype: float16 cannot hold counts up to n0·(1+scatter) = {peak:g} "
                             "(max 65504, with room for noise up to 32768); use float32 or bfloat16")
    check_bone(bone)


def _check_shift_fits(shift: torch.Tensor, H: int, W: int, name: str) -> None:
    """A move longer than the image takes the bone out of it, and its JSW label would be a number
    the image does not show."""
    worst = float(shift.detach().abs().max())
    if worst > max(H, W):
        raise ValueError(f"{name}: a bone move of {worst:.4g} px leaves the {H}x{W} px image")


def _check_index(index, n: int, name: str, device) -> torch.Tensor:
    if isinstance(index, int) and not isinstance(index, bool):
        index = torch.tensor([index])
    elif not isinstance(index, torch.Tensor):
        try:
            index = torch.as_tensor(index)
        except (TypeError, ValueError, RuntimeError):  # RuntimeError: None and other objects
            raise TypeError(f"{name}: expected an int tensor of indices, got {type(index).__name__}") from None
    if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name}: expected an integer tensor, got {index.dtype}")
    if index.ndim == 0:
        index = index.reshape(1)
    if index.ndim != 1:
        raise ValueError(f"{name}: expected shape (B,), got {tuple(index.shape)}")
    if index.numel() == 0:
        raise ValueError(f"{name}: empty batch")
    if bool(((index < 0) | (index >= n)).any()):
        raise ValueError(f"{name}: values must lie in [0, {n}), got [{int(index.min())}, {int(index.max())}]")
    return index.to(device=device, dtype=torch.int64)


def _sample_index(sample_index, batch: int, device) -> torch.Tensor:
    if sample_index is None:
        return torch.arange(batch, device=device, dtype=torch.int64)
    si = torch.as_tensor(sample_index)
    if si.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"sample_index: expected an int64 tensor, got {si.dtype}")
    if si.ndim != 1 or si.shape[0] != batch:
        raise ValueError(f"sample_index: expected shape ({batch},), got {tuple(si.shape)}")
    if bool((si < 0).any()):
        raise ValueError("sample_index: must be >= 0")
    return si.to(device=device, dtype=torch.int64)


def synthesize(
    bank: LayerStack,
    index,
    jsw_mm=None,
    shift_px=None,
    detector: Detector | None = None,
    seed: int = 0,
    backend: str = "auto",
    *,
    bone: str = "upper",
    interp: str = "linear",
    sample_index=None,
    out_dtype: torch.dtype = torch.float32,
    moves: str = "subpixel",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesize radiographs of bank joints at new joint space widths, in one fused pass.

    For each b: take ``bank[index[b]]``, move the chosen bone along its axis so the JSW becomes
    ``jsw_mm[b]`` (or by ``shift_px[b]``), composite with Beer–Lambert, run the detector chain
    with noise keyed by ``(seed, sample_index[b], pixel)``.

    Args:
        bank: LayerStack (N,H,W); its axis and JSW are measured once and cached.
        index: (B,) int bank entries in [0, N).
        jsw_mm: target JSW, float or (B,), mm, >= 0. Exclusive with ``shift_px``.
        shift_px: shift along the axis, float or (B,), px (positive opens the joint).
        detector: :class:`Detector`, or None for the noiseless attenuation image.
        seed: noise seed in [0, 2**64).
        backend: ``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"`` or ``"cuda"``.
        bone: which bone moves, ``"upper"`` or ``"lower"``; ``"both"`` moves each by half the
            shift, keeping the gap centred (as :meth:`LayerStack.shifted`; the lower bone
            moves in PyTorch, the upper bone in the fused pass).
        interp: ``"linear"`` or ``"cubic"``.
        sample_index: (B,) int64 global sample indices for the noise (default ``arange(B)``).
        out_dtype: float32, float16 or bfloat16.
        moves: ``"subpixel"`` (the exact shift, interpolated with ``interp``) or ``"integer"``:
            the move rounded to whole pixels (:func:`whole_pixel_moves`), an exact copy of the
            bone layer (no interpolation smooths noise or texture carried in it, e.g. a
            :meth:`LayerStack.with_residual` bank); the returned label is the JSW reached, within
            0.71 px of the one asked for. Not differentiable w.r.t. the shift.
    Returns:
        ``(images (B,1,H,W), jsw_mm (B,) float32)``: the label is the exact JSW of the moved
        layers (``JSW0 + shift · spacing``).
    """
    if not isinstance(bank, LayerStack):
        raise TypeError(f"bank: expected a LayerStack, got {type(bank).__name__}")
    _check_common(detector, seed, out_dtype, bone)
    moves, interp = check_moves(moves, interp)
    index = _check_index(index, bank.batch_size, "index", bank.device)
    B = index.shape[0]
    if jsw_mm is not None and shift_px is not None:
        raise ValueError("jsw_mm, shift_px: give one of them, not both")
    axis_all, jsw0_all = bank.geometry()
    axis, jsw0 = axis_all.index_select(0, index), jsw0_all.index_select(0, index)
    if bool(torch.isnan(jsw0).any()):
        bad = index[torch.isnan(jsw0)].unique()[:8].tolist()
        raise ValueError(f"index: bank entries {bad} have no measurable JSW (no line crosses both bones)")
    if jsw_mm is not None:
        target = per_sample(jsw_mm, "jsw_mm", B, device=bank.device, min_value=0.0)
        shift = (target - jsw0) / bank.spacing_mm
    else:
        shift = per_sample(0.0 if shift_px is None else shift_px, "shift_px", B, device=bank.device)
        target = jsw0 + shift * bank.spacing_mm
        if bool((target < 0).any()):
            raise ValueError(f"shift_px: would make JSW < 0 (min {float(target.min()):.4f} mm); bones may not interpenetrate")
    _check_shift_fits(shift, bank.shape[1], bank.shape[2], "jsw_mm" if jsw_mm is not None else "shift_px")
    si = _sample_index(sample_index, B, bank.device)
    whole = None
    if moves == "integer":
        target, whole = whole_pixel_moves(jsw0, target, axis, bank.spacing_mm)
    images = render(bank.soft, bank.upper, bank.lower, index, shift, axis, bone=bone, whole=whole, detector=detector,
                    seed=seed, sample_index=si, interp=interp, out_dtype=out_dtype, backend=backend)
    return images, target.to(torch.float32)


def compose(
    stack: LayerStack,
    jsw_mm=None,
    shift_px=None,
    detector: Detector | None = None,
    seed: int = 0,
    backend: str = "auto",
    *,
    bone: str = "upper",
    interp: str = "linear",
    sample_index=None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Put a layer stack back together as a radiograph (B,1,H,W).

    Optionally moves a bone first (``jsw_mm`` target in mm, or ``shift_px`` along the axis),
    then Beer–Lambert (``A' = soft + upper' + lower``) and, if ``detector`` is given, the
    detector chain (:class:`Detector`); without a detector the result is the noiseless
    attenuation ``A'``. Differentiable w.r.t. the layers and the shift on every backend.
    For whole-pixel moves, and the JSW each move reaches, call
    ``synthesize(stack, torch.arange(B), jsw_mm, ..., moves="integer")``: a stack is a bank.

    Args:
        stack: LayerStack (B,H,W).
        jsw_mm: float or (B,), mm, >= 0 (exclusive with ``shift_px``).
        shift_px: float or (B,) tensor, px; positive opens the joint. A shift that would close
            the joint below JSW = 0 raises ``ValueError``.
        detector, seed, backend, bone, interp, sample_index, out_dtype: see :func:`synthesize`.
    Returns:
        Tensor (B,1,H,W): attenuation (dimensionless) or counts, per ``detector.output``.
    """
    if not isinstance(stack, LayerStack):
        raise TypeError(f"stack: expected a LayerStack, got {type(stack).__name__}")
    _check_common(detector, seed, out_dtype, bone)
    interp = check_moves("subpixel", interp)[1]
    B = stack.batch_size
    if B == 0:
        raise ValueError("stack: empty batch (B=0)")
    if jsw_mm is not None and shift_px is not None:
        raise ValueError("jsw_mm, shift_px: give one of them, not both")
    if jsw_mm is not None:
        shift = stack.shift_for_jsw(jsw_mm)
        axis = stack.resolved_axis()
    elif shift_px is not None:
        if isinstance(shift_px, torch.Tensor) and shift_px.requires_grad:
            if shift_px.numel() not in (1, B):
                raise ValueError(f"shift_px: expected a scalar or shape ({B},), got {tuple(shift_px.shape)}")
            shift = shift_px.to(device=stack.device, dtype=torch.float32).reshape(-1).expand(B)
            check_tensor(shift.detach(), "shift_px", ndim=1)
        else:
            shift = per_sample(shift_px, "shift_px", B, device=stack.device)
        axis = stack.resolved_axis()
        if bool((shift.detach() < 0).any()):  # only closing shifts can reach JSW < 0
            from lsn_fast.physics.jsw import measure_jsw

            j0 = measure_jsw(LayerStack(stack.soft, stack.upper, stack.lower, stack.spacing_mm, axis, validate=False))
            new = j0 + shift.detach() * stack.spacing_mm
            if bool((new < 0).any()):
                raise ValueError(f"shift_px: would make JSW < 0 (min {float(new.min()):.4f} mm); bones may not interpenetrate")
    else:
        shift = torch.zeros(B, device=stack.device)
        axis = stack.axis if stack.axis is not None else torch.tensor([[-1.0, 0.0]], device=stack.device).expand(B, 2)
    if jsw_mm is not None or shift_px is not None:
        _check_shift_fits(shift, stack.shape[1], stack.shape[2], "jsw_mm" if jsw_mm is not None else "shift_px")
    index = torch.arange(B, device=stack.device, dtype=torch.int64)
    si = _sample_index(sample_index, B, stack.device)
    return render(stack.soft, stack.upper, stack.lower, index, shift, axis.to(shift.device), bone=bone,
                  detector=detector, seed=seed, sample_index=si, interp=interp, out_dtype=out_dtype, backend=backend)
