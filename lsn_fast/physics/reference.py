"""The physics reference: eager PyTorch, differentiable, the ground truth for every backend.

Everything here is written for clarity and exactness, not speed; the fused kernels in
``kernels/`` (Triton), ``csrc/cpu`` and ``csrc/cuda`` implement the same arithmetic in one pass.

Shapes: layers (B,H,W); displacements (B,2) px as (dy, dx); images (B,1,H,W).
"""

from __future__ import annotations

import torch

from lsn_fast.physics.detector import POISSON_INVERSION_TERMS, POISSON_SMALL_LAMBDA
from lsn_fast.physics.philox import detector_normals

INTERP_MODES = {"linear": 0, "cubic": 1}
KEYS_A = -0.5  # Keys (1981) cubic convolution; a = -0.5 reproduces quadratics


def _taps(offset: torch.Tensor, interp: str):
    """Integer base offsets and weights for sampling at ``i + offset`` (offset (B,) float32).

    Returns (base (B,) int64, weights list of (B,) tensors, tap offsets list of ints) such that
    ``value(i + offset) = Σ_t w_t · x[clamp(i + base + tap_t)]``.
    """
    base_f = torch.floor(offset)
    f = offset - base_f  # in [0, 1); d f / d offset = 1, so gradients reach the shift
    base = base_f.to(torch.int64)
    if interp == "linear":
        return base, [1.0 - f, f], [0, 1]
    if interp == "cubic":
        a = KEYS_A
        f2, f3 = f * f, f * f * f
        w_m1 = a * f3 - 2.0 * a * f2 + a * f
        w_0 = (a + 2.0) * f3 - (a + 3.0) * f2 + 1.0
        w_1 = -(a + 2.0) * f3 + (2.0 * a + 3.0) * f2 - a * f
        w_2 = -a * f3 + a * f2
        return base, [w_m1, w_0, w_1, w_2], [-1, 0, 1, 2]
    raise ValueError(f"interp: expected 'linear' or 'cubic', got {interp!r}")


def _resample_axis(x: torch.Tensor, offset: torch.Tensor, dim: int, interp: str) -> torch.Tensor:
    """out[..., i, ...] = x sampled at i + offset[b] along ``dim`` (1 = rows, 2 = cols), edge-clamped."""
    B, n = x.shape[0], x.shape[dim]
    base, weights, taps = _taps(offset, interp)
    i = torch.arange(n, device=x.device, dtype=torch.int64)
    out = None
    for w, t in zip(weights, taps):
        idx = (i.view(1, n) + base.view(B, 1) + t).clamp_(0, n - 1)  # (B, n)
        if dim == 1:
            g = torch.gather(x, 1, idx.view(B, n, 1).expand(B, n, x.shape[2]))
            term = w.view(B, 1, 1) * g
        else:
            g = torch.gather(x, 2, idx.view(B, 1, n).expand(B, x.shape[1], n))
            term = w.view(B, 1, 1) * g
        out = term if out is None else out + term
    return out


def translate(layer: torch.Tensor, disp: torch.Tensor, interp: str = "linear") -> torch.Tensor:
    """Translate each image by its own sub-pixel displacement, edge-clamped.

    ``out[b, y, x] = layer[b, y − dy_b, x − dx_b]`` with separable linear or Keys-cubic
    interpolation (rows first, then columns); samples outside the image take the nearest edge
    value (a bone shaft continues beyond the crop). A zero displacement returns the input values
    exactly (weights 1 and 0); integer displacements are exact copies; linear and cubic weights
    sum to 1 and preserve the first moment, so a layer's sum and centroid move exactly with the
    shift away from the borders.

    Args:
        layer: (B,H,W) any float dtype (computed in float32).
        disp: (B,2) px, (dy, dx).
        interp: ``"linear"`` or ``"cubic"``.
    Returns:
        (B,H,W) float32.
    """
    if interp not in INTERP_MODES:
        raise ValueError(f"interp: expected 'linear' or 'cubic', got {interp!r}")
    x = layer.to(torch.float32)
    disp = disp.to(device=x.device, dtype=torch.float32)
    x = _resample_axis(x, -disp[:, 0], 1, interp)
    return _resample_axis(x, -disp[:, 1], 2, interp)


def rotate_about_centre(x: torch.Tensor, angle_deg: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate (B,C,H,W) images about their centres, optionally mirrored left–right first.

    Bilinear, border padding (``grid_sample``, ``align_corners=False``); the H/W factors keep the
    rotation rigid on non-square images.

    Args:
        x: (B,C,H,W) float32.
        angle_deg: (B,) degrees; positive turns the content counter-clockwise on screen (y down).
        flip: None or (B,) bool: mirror the content left–right before the rotation.
    Returns:
        (B,C,H,W) float32.
    """
    B, C, H, W = x.shape
    a = torch.deg2rad(angle_deg.to(x.device, torch.float32))
    c, s = torch.cos(a), torch.sin(a)
    # output pixel -> input pixel in normalized coordinates (x right, y down)
    ar = W / H
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = c
    theta[:, 0, 1] = -s / ar
    theta[:, 1, 0] = s * ar
    theta[:, 1, 1] = c
    if flip is not None:  # x -> -x on the input side: the content is mirrored, then rotated
        theta[:, 0, :2] *= torch.where(flip.to(x.device), -1.0, 1.0).view(B, 1)
    grid = torch.nn.functional.affine_grid(theta, [B, C, H, W], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def stretch_across_axis(x: torch.Tensor, axis: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Scale (B,C,H,W) images by ``scale`` perpendicular to ``axis`` about their centres.

    Distances along ``axis`` are unchanged, so a gap measured along the axis (the JSW) is kept
    while the widths across it (bones, finger) become ``scale`` times as large. Bilinear, border
    padding (``grid_sample``, ``align_corners=False``), like :func:`rotate_about_centre`.

    Args:
        x: (B,C,H,W) float32.
        axis: (B,2) unit vectors ``(dy, dx)``.
        scale: (B,) > 0; 1 returns the input up to grid rounding.
    Returns:
        (B,C,H,W) float32.
    """
    B, C, H, W = x.shape
    ax = axis.to(x.device, torch.float32)
    nx, ny = ax[:, 0], -ax[:, 1]  # the unit normal to (dx, dy) = (ax[:, 1], ax[:, 0]), as (x, y)
    k = 1.0 / scale.to(x.device, torch.float32) - 1.0
    # output pixel p -> input p + k (p·n) n, in pixels about the centre; normalized: D^-1 M D
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = 1.0 + k * nx * nx
    theta[:, 0, 1] = k * nx * ny * (H / W)
    theta[:, 1, 0] = k * nx * ny * (W / H)
    theta[:, 1, 1] = 1.0 + k * ny * ny
    grid = torch.nn.functional.affine_grid(theta, [B, C, H, W], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_weights(sigma: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Normalized 1-D Gaussian taps per sample.

    Args:
        sigma: (B,) px, >= 0. Each sample's kernel has radius ceil(3σ); σ = 0 is the identity.
    Returns:
        (weights (B, 2R+1) float32, R) with R the largest radius in the batch (zeros pad the
        smaller kernels).
    """
    sigma = sigma.to(torch.float32)
    radius = torch.ceil(3.0 * sigma).to(torch.int64)
    R = int(radius.max()) if sigma.numel() else 0
    j = torch.arange(-R, R + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.clamp_min(1e-12).view(-1, 1)
    w = torch.exp(-0.5 * (j.view(1, -1) / s) ** 2)
    w = torch.where(j.abs().view(1, -1) <= radius.view(-1, 1).to(torch.float32), w, torch.zeros_like(w))
    w = torch.where((sigma == 0).view(-1, 1), (j == 0).to(torch.float32).view(1, -1).expand_as(w), w)
    # Normalizer summed left to right, one tap at a time (what the cpu/cuda/triton kernels do): the
    # zero taps that pad a small kernel to the batch's R then add exactly nothing, so a sample's
    # weights do not depend on which other samples share its batch (torch's sum() reassociates
    # differently for different row lengths and would change the last bit).
    total = torch.zeros_like(sigma)
    for k in range(2 * R + 1):
        total = total + w[:, k]
    return w / total.view(-1, 1), R


def gaussian_blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with per-sample σ (px), edge-clamped borders.

    Args:
        img: (B,H,W) float32.
        sigma: (B,) px, >= 0.
    Returns:
        (B,H,W) float32: rows (vertical pass) first, then columns.
    """
    w, R = gaussian_weights(sigma)
    if R == 0:
        return img
    B, H, W = img.shape
    out = img
    for dim, n in ((1, H), (2, W)):
        i = torch.arange(n, device=img.device, dtype=torch.int64)
        acc = None
        for k in range(2 * R + 1):
            idx = (i + (k - R)).clamp_(0, n - 1)
            g = out.index_select(dim, idx)
            term = w[:, k].view(B, 1, 1) * g
            acc = term if acc is None else acc + term
        out = acc
    return out


def poisson_from_normal(lam: torch.Tensor, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Poisson counts with mean ``lam`` from one normal ``z`` and one uniform ``u`` per pixel.

    λ < POISSON_SMALL_LAMBDA: exact inversion of the Poisson CDF with ``u`` (at most
    POISSON_INVERSION_TERMS terms). Otherwise the third-order Cornish–Fisher quantile
    ``floor(λ + sqrt(λ)·z + (z² − 1)/6 + 1/2)``, which matches the Poisson mean, variance and
    skewness to O(λ^-1/2). Deterministic given (z, u), so every backend draws the same counts.
    """
    lam = lam.clamp_min(0.0)
    large = torch.floor(lam + torch.sqrt(lam) * z + (z * z - 1.0) / 6.0 + 0.5).clamp_min(0.0)
    small_mask = lam < POISSON_SMALL_LAMBDA
    if not bool(small_mask.any()):
        return large
    ls = torch.where(small_mask, lam, torch.zeros_like(lam))
    p = torch.exp(-ls)
    cdf = p
    k = torch.zeros_like(lam)
    for i in range(1, POISSON_INVERSION_TERMS + 1):
        k = k + (u > cdf).to(lam.dtype)
        p = p * ls / float(i)
        cdf = cdf + p
    return torch.where(small_mask, k, large)


def detector_chain(
    att: torch.Tensor,
    params: torch.Tensor,
    *,
    seed: int,
    sample_index: torch.Tensor,
    noise_mode: int,
    output_mode: int,
    min_counts: float,
) -> torch.Tensor:
    """Stages 1–6 of DESIGN.md §2 on attenuation images.

    Args:
        att: (B,H,W) float32 attenuation A' (dimensionless).
        params: (B,5) float32, columns ``detector.PARAM_COLUMNS``
            (n0, scatter, scatter_sigma_px, blur_sigma_px, electronic_sigma).
        seed: 64-bit noise seed; sample_index: (B,) int64 global sample indices.
        noise_mode: 0 none, 1 gaussian, 2 poisson. output_mode: 0 attenuation, 1 counts.
        min_counts: clamp before the log.
    Returns:
        (B,H,W) float32.
    """
    B, H, W = att.shape
    n0 = params[:, 0].view(B, 1, 1)
    q = n0 * torch.exp(-att)
    spr = params[:, 1]
    if bool((spr > 0).any()):
        q = q + spr.view(B, 1, 1) * gaussian_blur(q, params[:, 2])
    need_rng = noise_mode != 0 or bool((params[:, 4] > 0).any())
    if need_rng:
        z1, z2, u2 = detector_normals(seed, sample_index, H, W)
    if noise_mode == 1:
        q = q + torch.sqrt(q.clamp_min(0.0)) * z1
    elif noise_mode == 2:
        q = poisson_from_normal(q, z1, u2)
    q = gaussian_blur(q, params[:, 3])
    if need_rng:
        q = q + params[:, 4].view(B, 1, 1) * z2
    if output_mode == 1:
        return q
    return -torch.log(q.clamp_min(min_counts) / n0)


def synthesize_reference(
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
    """The fused operator's reference: gather, translate one bone, Beer–Lambert, detector.

    Args:
        soft, upper, lower: bank layers (N,H,W), any float dtype.
        index: (B,) int64 bank entries, in [0, N).
        disp: (B,2) float32 px (dy, dx) displacement of the moving bone.
        params: (B,5) detector parameters, or None for the noiseless attenuation A'.
        move_lower: move the lower bone instead of the upper one.
        sample_index: (B,) int64 global sample indices for the noise (default arange(B)).
    Returns:
        (B,1,H,W) in ``out_dtype``.
    """
    s, u, l = (t.index_select(0, index).to(torch.float32) for t in (soft, upper, lower))
    if move_lower:
        l = translate(l, disp, interp)
    else:
        u = translate(u, disp, interp)
    att = s + u + l
    if params is None:
        out = att
    else:
        if sample_index is None:
            sample_index = torch.arange(att.shape[0], device=att.device, dtype=torch.int64)
        out = detector_chain(
            att, params, seed=seed, sample_index=sample_index, noise_mode=noise_mode,
            output_mode=output_mode, min_counts=min_counts,
        )
    return out.unsqueeze(1).to(out_dtype)

