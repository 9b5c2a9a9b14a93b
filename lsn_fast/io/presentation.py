"""Presentation images (8-bit, bone bright, processed for display) to the LSN's attenuation domain.

What the LSN was trained on (DESIGN.md §2, :mod:`lsn_fast.physics.detector`): ``y = −log(q/N0)``
of a finger phantom through a DR detector at 0.1 mm — 0 in air, soft tissue around
:data:`SOFT_ATTENUATION` (median over phantom soft tissue: 0.21, 10-90 %: 0.10-0.30), bone (soft
tissue plus cortical/trabecular bone) around :data:`BONE_ATTENUATION` (median 0.45, 10-90 %:
0.39-0.56), measured on 8 default phantoms (``lsn_fast.phantom.generate(8, seed=0)`` through
``Detector()``).

A *for presentation* radiograph is not that. The vendor took the log image and applied, in
some order: a window and an offset (air is not 0 but a grey level, 20-60 of 255 in the dev
images), a tone curve (gamma or an S-shaped LUT that spreads bone over the bright half of the
range: bone/soft-tissue contrast of 3-4× over air where the phantom's is ~2×), edge enhancement
(unsharp masking: ``v + k·(v − G_σ * v)``, dark halos beside bright edges) and 8-bit
quantisation. None of it is invertible exactly (the parameters are not in the file); the old
``"presentation"`` conversion only stretched P0.5..P99.5 to 0..1, which puts bone at ~0.9 and soft
tissue at ~0.35 and leaves the curve in.

:func:`presentation_to_attenuation` (``kind="presentation-anchored"`` in
:func:`lsn_fast.io.read_radiograph`) maps three anchors instead of two:

1. ``v_air`` is the most common grey level of the image's outer frame (5 % of each side: the
   background of a hand radiograph; not the darkest pixel, which labels and collimator shadows
   make meaningless); a two-class Otsu split of the pixels clearly above air (by 8 % of the
   range) gives soft tissue and bone, ``v_soft`` and ``v_bone`` their medians.
2. A power law through the three anchors undoes a gamma-like tone curve to first order::

       t = max(v − v_air, 0) / (v_soft − v_air)
       y = SOFT_ATTENUATION · t^γ,   γ = log(BONE/SOFT) / log((v_bone − v_air)/(v_soft − v_air))

   so air → 0, the median soft tissue → 0.21 and the median bone → 0.45, as in the phantoms;
   γ is clamped to [0.25, 4].
3. Optional inverse unsharp masking (``unsharp=(k, sigma_px)``): ``Y = V / (1 + k(1 − Ĝ_σ))`` in
   the Fourier domain, the exact inverse of ``v + k(v − G_σ * v)``. The vendor's (k, σ) is unknown:
   off by default; ``lab/2026-12-07-real-front-end/`` measures what it does.

8-bit steps are left as they are (0.4 % of the range, below the phantoms' quantum noise).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BONE_ATTENUATION", "GAMMA_RANGE", "SOFT_ATTENUATION", "anchors", "otsu", "presentation_to_attenuation",
           "three_class_otsu"]

SOFT_ATTENUATION = 0.21
BONE_ATTENUATION = 0.45
GAMMA_RANGE = (0.25, 4.0)
_MAX_SAMPLES = 2_000_000


def three_class_otsu(x: np.ndarray, bins: int = 128) -> tuple[float, float]:
    """The two thresholds (t1 < t2) of a three-class Otsu split of ``x``'s histogram over its own
    range (maximal between-class variance, exhaustive over bin edges)."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: -(-flat.size // _MAX_SAMPLES)]
    lo, hi = float(flat.min()), float(flat.max())
    if not hi > lo:
        raise ValueError("image is constant: no classes to split")
    hist, edges = np.histogram(flat, bins=bins, range=(lo, hi))
    p = hist.astype(np.float64) / hist.sum()
    c = (edges[:-1] + edges[1:]) / 2
    P = np.concatenate([[0], np.cumsum(p)])
    M = np.concatenate([[0], np.cumsum(p * c)])
    n = len(p)
    i = np.arange(1, n - 1)[:, None]
    j = np.arange(2, n)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        w0, w1, w2 = P[i], P[j] - P[i], P[n] - P[j]
        m0, m1, m2 = M[i], M[j] - M[i], M[n] - M[j]
        between = m0 ** 2 / w0 + m1 ** 2 / w1 + m2 ** 2 / w2
    between = np.where((j > i) & np.isfinite(between), between, -np.inf)
    k = int(np.argmax(between))
    a, b = divmod(k, between.shape[1])
    return float(edges[int(i.ravel()[a])]), float(edges[int(j.ravel()[b])])


def otsu(x: np.ndarray, bins: int = 128) -> float:
    """Two-class Otsu threshold of ``x`` over its own range."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: -(-flat.size // _MAX_SAMPLES)]
    lo, hi = float(flat.min()), float(flat.max())
    if not hi > lo:
        raise ValueError("image is constant: no classes to split")
    hist, edges = np.histogram(flat, bins=bins, range=(lo, hi))
    p = hist.astype(np.float64) / hist.sum()
    c = (edges[:-1] + edges[1:]) / 2
    w = np.cumsum(p)
    mu = np.cumsum(p * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w - mu) ** 2 / (w * (1 - w))
    between[~np.isfinite(between)] = -1
    return float(edges[int(np.argmax(between)) + 1])


def _inverse_unsharp(y: np.ndarray, k: float, sigma_px: float) -> np.ndarray:
    H, W = y.shape
    pad = int(math.ceil(3 * sigma_px))
    yp = np.pad(y, pad, mode="edge")
    fy = np.fft.fftfreq(yp.shape[0])[:, None]
    fx = np.fft.rfftfreq(yp.shape[1])[None, :]
    g = np.exp(-2 * (math.pi * sigma_px) ** 2 * (fx ** 2 + fy ** 2))
    out = np.fft.irfft2(np.fft.rfft2(yp) / (1.0 + k * (1.0 - g)), s=yp.shape)
    return out[pad:pad + H, pad:pad + W].astype(np.float32)


def anchors(v: np.ndarray, *, mask=None) -> tuple[float, float, float, float]:
    """(v_air, v_soft, v_bone, soft/bone threshold) of a bone-bright image (module docstring,
    step 1). ValueError when the classes cannot be told apart."""
    v = np.asarray(v, dtype=np.float32)
    H, W = v.shape
    valid = np.ones_like(v, dtype=bool) if mask is None else ~np.asarray(mask, dtype=bool)
    # air: the most common grey level of the image's outer frame (5 % of each side), where a
    # hand radiograph shows background
    fr = np.zeros_like(valid)
    bh, bw = max(1, H // 20), max(1, W // 20)
    fr[:bh], fr[-bh:], fr[:, :bw], fr[:, -bw:] = True, True, True, True
    frame = v[fr & valid]
    if frame.size < 16:
        raise ValueError("presentation image has no background frame to take the air level from")
    lo, hi = float(np.percentile(v[valid], 0.5)), float(np.percentile(v[valid], 99.5))
    if not hi > lo:
        raise ValueError("image is constant (no contrast between air and tissue)")
    hist, edges = np.histogram(frame, bins=64, range=(lo, hi))
    kmax = int(np.argmax(hist))
    in_mode = frame[(frame >= edges[kmax]) & (frame <= edges[kmax + 1])]
    v_air = float(np.median(in_mode)) if in_mode.size else float(np.median(frame))
    # soft tissue and bone: a two-class Otsu split of what lies clearly above air
    body = v[valid & (v > v_air + 0.08 * (hi - v_air))]
    if body.size < 32:
        raise ValueError("presentation image has no separate air / soft-tissue / bone classes")
    t = otsu(body)
    soft, bone = body[body < t], body[body >= t]
    if min(soft.size, bone.size) < 16:
        raise ValueError("presentation image has no separate soft-tissue / bone classes")
    v_soft, v_bone = float(np.median(soft)), float(np.median(bone))
    if not v_air < v_soft < v_bone:
        raise ValueError(f"presentation anchors are not ordered (air {v_air}, soft {v_soft}, bone {v_bone})")
    return v_air, v_soft, v_bone, t


def presentation_to_attenuation(v: np.ndarray, *, mask=None, unsharp=None) -> tuple[np.ndarray, dict]:
    """Convert a bone-bright presentation image to the phantom attenuation domain (module docstring).

    Args:
        v: (H, W) float array, bone bright (MONOCHROME1 already inverted).
        mask: optional (H, W) bool array of pixels to ignore (DICOM padding).
        unsharp: None or (k, sigma_px): undo an unsharp mask of that strength first.
    Returns:
        (y, info): float32 attenuation >= 0, and the anchors, γ and a formula string.
    Raises:
        ValueError: no three classes (a constant image, or one without soft tissue and bone).
    """
    v = np.asarray(v, dtype=np.float32)
    v_air, v_soft, v_bone, t = anchors(v, mask=mask)
    t1, t2 = v_air, t
    ratio = (v_bone - v_air) / (v_soft - v_air)
    gamma = math.log(BONE_ATTENUATION / SOFT_ATTENUATION) / math.log(ratio)
    gamma_c = float(min(max(gamma, GAMMA_RANGE[0]), GAMMA_RANGE[1]))
    x = v
    note = ""
    if unsharp is not None:
        k, s = (float(u) for u in unsharp)
        if not (math.isfinite(k) and 0 <= k <= 10 and math.isfinite(s) and 0 < s <= 200):
            raise ValueError(f"unsharp: expected (k in [0, 10], sigma_px in (0, 200]), got {unsharp!r}")
        x = _inverse_unsharp(v, k, s)
        note = f"inverse unsharp mask k={k:g}, sigma={s:g} px; "
    t = np.maximum(x - np.float32(v_air), 0.0) / np.float32(v_soft - v_air)
    y = (SOFT_ATTENUATION * np.power(t, gamma_c)).astype(np.float32)
    if mask is not None:
        y = np.where(mask, np.float32(0.0), y)
    info = {"air_level": v_air, "soft_level": v_soft, "bone_level": v_bone, "gamma": gamma_c,
            "gamma_unclamped": gamma, "otsu_thresholds": (t1, t2),
            "conversion": note + f"presentation-anchored: y = {SOFT_ATTENUATION} * (max(v - {v_air:g}, 0) / "
                                 f"{v_soft - v_air:g})^{gamma_c:.3f} (air {v_air:g} -> 0, soft {v_soft:g} -> "
                                 f"{SOFT_ATTENUATION}, bone {v_bone:g} -> {BONE_ATTENUATION})"}
    return y, info
