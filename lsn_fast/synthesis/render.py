"""The one render path: bank layers + a move + a detector → images, through the fused op.

:func:`lsn_fast.synthesize`, :func:`lsn_fast.compose`, :class:`lsn_fast.JSWStream` and the
five-percent experiment's ``Synthesizer`` all end here. Callers validate their own arguments
(targets, JSW bounds, shapes) and describe the move in the vocabulary of
:mod:`lsn_fast.physics.moves`; :func:`render` turns it into the op's single moving layer and
displacement, and the op (:func:`lsn_fast.ops.op.synthesize_op`) checks the tensors through its
schema before any backend runs.
"""

from __future__ import annotations

import torch

from lsn_fast.ops.op import seed_to_signed, synthesize_op
from lsn_fast.physics.detector import Detector
from lsn_fast.physics.moves import bone_displacements, move_layer
from lsn_fast.physics.reference import INTERP_MODES

__all__ = ["render"]


def render(
    soft: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    index: torch.Tensor,
    shift: torch.Tensor | None,
    axis: torch.Tensor | None,
    *,
    bone: str = "upper",
    whole: torch.Tensor | None = None,
    detector: Detector | None = None,
    params: torch.Tensor | None = None,
    seed: int = 0,
    sample_index: torch.Tensor | None = None,
    interp: str = "linear",
    out_dtype: torch.dtype = torch.float32,
    backend: str = "auto",
) -> torch.Tensor:
    """Render ``B`` images from bank layers, each with its bone(s) moved.

    Args:
        soft, upper, lower: (N,H,W) bank layers, line integrals (dimensionless).
        index: (B,) int64 bank entries on the layers' device.
        shift: (B,) px along ``axis`` (positive opens), or None with ``axis`` None: no move.
        axis: (B,2) unit vectors (dy, dx) of the chosen entries.
        bone: ``"upper"``, ``"lower"`` or ``"both"`` (the upper bone moves in the fused pass, the
            lower one against the axis; ``"both"`` moves the lower half here, in PyTorch).
        whole: (B,2) whole-pixel move of the upper bone (``moves="integer"``,
            :func:`lsn_fast.whole_pixel_moves`) instead of ``shift · axis``.
        detector: :class:`Detector` (its modes and ``min_counts``; its parameters unless
            ``params`` is given), or None for the noiseless attenuation image.
        params: (B, len(PARAM_COLUMNS)) float32 per-sample detector parameters, or None.
        seed: noise seed in [0, 2**64); sample_index: (B,) int64 (default ``arange(B)``).
        interp, out_dtype, backend: as :func:`lsn_fast.synthesize`.
    Returns:
        (B,1,H,W) images in ``out_dtype``.
    """
    B = index.shape[0]
    dev = soft.device
    if sample_index is None:
        sample_index = torch.arange(B, device=dev, dtype=torch.int64)
    if shift is None and whole is None:
        up, low = torch.zeros(B, 2, device=dev), None
    else:
        up, low = bone_displacements(shift, axis, bone, whole)
    move_lower = False
    if low is not None and up is None:  # the lower bone alone: it is the op's moving layer
        up, move_lower = low, True
    elif low is not None:  # both: the lower half moves here, so the op moves one layer
        soft, upper = soft.index_select(0, index), upper.index_select(0, index)
        lower = move_layer(lower.index_select(0, index), low, interp, whole is not None)
        index = torch.arange(B, device=dev, dtype=torch.int64)
    if params is None and detector is not None:
        params = detector.params(B, dev)
    return synthesize_op(
        soft, upper, lower, index, up.to(device=dev, dtype=torch.float32).contiguous(), params,
        sample_index, move_lower, seed_to_signed(seed),
        0 if detector is None else detector.noise_mode,
        0 if detector is None else detector.output_mode,
        INTERP_MODES[interp],
        0.5 if detector is None else float(detector.min_counts),
        out_dtype,
        backend if backend is not None else "auto",
    )
