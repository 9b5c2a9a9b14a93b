"""Finger-joint phantoms: analytic 3-D anatomy projected to ground-truth layers (DESIGN.md §2).

Each phantom is a PIP/MCP-like joint built in a canonical frame (finger vertical, proximal bone
on top, y down, origin at the joint centre, mm; z is the beam direction), rotated by a random
tilt about the joint centre and jittered in position, and projected with a parallel beam along
z. Every layer is a line integral ``∫ μ dl`` (μ in 1/cm, lengths in cm, so the layers are
dimensionless):

* ``soft``: the finger with every bone voxel filled with soft tissue: an elliptical x–z cross
  section (adipose outer layer over a muscle/tendon core) with a bulge at the joint;
* ``upper``: excess attenuation (μ_bone − μ_core) of the proximal bone: shaft, flared
  metaphysis and a bicondylar head whose end profile ``y_end(x)`` has two condyles and an
  intercondylar notch;
* ``lower``: the same for the distal bone: a concave base that follows the head profile plus the
  gap, with small lateral lips beyond the head.

Bones have elliptical x–z cross sections, a cortical shell (thick in the shaft, thin at the
joint) around trabecular bone with a projected trabecular texture (band-pass filtered noise,
multiplicative on the trabecular term only, sparser in the medullary cavity of the shaft), and a
homogeneous subchondral plate (dense bone, μ between trabecular and cortical, >= 0.5 mm and
>= 6 px up to 1.5 mm thick) following the articular surface. The bone end is
a cut in y that depends on x only (an extrusion along z) and the cross section is constant over
the last ``max(1 mm, 6 px)`` or more before the joint, so the projected thickness is a step at the
margin: the covered-fraction JSW estimator (:mod:`lsn_fast.jsw`) is then unbiased.

The gap along x is ``g0 + δ(x)`` with ``δ >= 0`` small and smooth (amplitude shrunk for small
JSW so the bones never interpenetrate). ``g0`` is chosen so that the *true* JSW, with the same
definition as :func:`lsn_fast.jsw.measure_jsw` (the mean gap over the central half of the lines
that cross both bones, computed on a fine grid in the canonical frame), equals the requested or
drawn value.

Pixels integrate over their area: each pixel averages 16 sub-samples on a rank-1 lattice
(``x = (k+½)/16, y = ((5k mod 16)+½)/16``: every row and column of a 16×16 sub-grid once), with
analytic chords (``2b·sqrt(1 − (x/a)²)`` for an ellipse), no z voxelization. The slowly varying
trabecular texture is evaluated at the pixel centre.

Attenuation coefficients at an effective energy of ~50 keV (NIST XCOM mass attenuation
coefficients of the ICRU-44 tissues times their densities; water 0.227 /cm):

* adipose tissue (ICRU-44, ρ = 0.95 g/cm³): μ/ρ ≈ 0.212 cm²/g → μ ≈ 0.19–0.205 /cm,
* muscle / tendon (ICRU-44, ρ = 1.05): μ/ρ ≈ 0.226 cm²/g → μ ≈ 0.215–0.24 /cm,
* cortical bone (ICRU-44, ρ = 1.92): μ/ρ ≈ 0.424 cm²/g → μ ≈ 0.81 /cm; range 0.80–1.00 /cm,
* trabecular bone, a bone/marrow mix (~15–35 % bone volume): μ ≈ 0.30–0.45 /cm.

Every value is drawn per phantom within these ranges. Sample ``i`` of ``generate(n, seed=s)``
depends only on ``(s, i)`` (its own ``torch.Generator``), so it is the same for every ``n > i``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from lsn_fast.utils.validation import check_positive_float
from lsn_fast.physics.layers import LayerStack, axis_from_angle

__all__ = ["generate", "SUBSAMPLES"]

SUBSAMPLES = 16  # sub-samples per pixel (rank-1 lattice)
_SUB_X = [(k + 0.5) / SUBSAMPLES for k in range(SUBSAMPLES)]
_SUB_Y = [((5 * k) % SUBSAMPLES + 0.5) / SUBSAMPLES for k in range(SUBSAMPLES)]
_CHUNK_SUBSAMPLES = 1 << 21  # sub-samples rendered per step (bounds memory)
_MASK64 = (1 << 64) - 1

# attenuation coefficient ranges, 1/cm, ~50 keV (NIST XCOM × ICRU-44 densities, see above)
MU_ADIPOSE = (0.190, 0.205)
MU_MUSCLE = (0.215, 0.240)
MU_CORTICAL = (0.80, 1.00)
MU_TRABECULAR = (0.30, 0.45)


# ----------------------------------------------------------------------------- seeding
def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _sample_generator(seed: int, index: int) -> torch.Generator:
    s = _splitmix64(_splitmix64(seed & _MASK64) ^ _splitmix64((index * 0xD1B54A32D192ED03) & _MASK64))
    return torch.Generator().manual_seed(s & ((1 << 63) - 1))


# ----------------------------------------------------------------------------- arguments
def _check_size(size) -> tuple[int, int]:
    if isinstance(size, bool):
        raise TypeError("size: expected an int or a (H, W) pair of ints, got bool")
    if isinstance(size, int):
        hw = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size: expected an int or a (H, W) pair of ints, got {size!r}")
    if min(hw) < 32:
        raise ValueError(f"size: each side must be >= 32 px, got {hw}")
    if max(hw) > 8192:
        raise ValueError(f"size: each side must be <= 8192 px, got {hw}")
    return hw


def _check_tilt(tilt_deg) -> tuple[float, float]:
    if isinstance(tilt_deg, bool):
        raise TypeError("tilt_deg: expected a number or a (lo, hi) pair of degrees")
    if isinstance(tilt_deg, (int, float)):
        lo = hi = float(tilt_deg)
    elif isinstance(tilt_deg, (tuple, list)) and len(tilt_deg) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in tilt_deg):
        lo, hi = float(tilt_deg[0]), float(tilt_deg[1])
    else:
        raise TypeError(f"tilt_deg: expected a number or a (lo, hi) pair of degrees, got {tilt_deg!r}")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or max(abs(lo), abs(hi)) > 45.0:
        raise ValueError(f"tilt_deg: need finite lo <= hi within [-45, 45] degrees, got ({lo}, {hi})")
    return lo, hi


def _check_jsw(jsw_mm, n: int):
    if jsw_mm is None:
        return None
    if isinstance(jsw_mm, bool):
        raise TypeError("jsw_mm: expected a number, a sequence or a tensor of mm, got bool")
    if isinstance(jsw_mm, (int, float)):
        t = torch.full((n,), float(jsw_mm), dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(jsw_mm).detach().to("cpu", torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"jsw_mm: expected a number, a sequence or a tensor of mm ({e})") from None
        if t.numel() == 1:
            t = t.expand(n).clone()
        elif t.numel() != n:
            raise ValueError(f"jsw_mm: expected a scalar or {n} values, got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("jsw_mm: contains NaN or Inf")
    if bool((t < 0).any()):
        raise ValueError(f"jsw_mm: must be >= 0 (bones may not interpenetrate), got min {float(t.min()):.4g}")
    return t


# ----------------------------------------------------------------------------- parameters
def _draw(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _sample_params(g: torch.Generator, jsw: float | None, fov_mm: float, spacing: float, tilt: tuple[float, float]) -> dict:
    """All random parameters of one phantom (python floats, mm, 1/cm, degrees)."""
    u = lambda lo, hi: _draw(g, lo, hi)  # noqa: E731
    s = min(1.0, fov_mm / 24.0)  # anatomy scale: shrink lateral anatomy for small fields of view
    p: dict = {"scale": s}
    p["jsw"] = u(0.0, 3.0) if jsw is None else float(jsw)
    p["tilt"] = u(*tilt)
    p["jit_y"] = u(-0.06, 0.06) * fov_mm
    p["jit_x"] = u(-0.06, 0.06) * fov_mm
    # attenuation (1/cm, ~50 keV)
    p["mu_fat"] = u(*MU_ADIPOSE)
    p["mu_soft"] = u(*MU_MUSCLE)
    p["mu_cort"] = u(*MU_CORTICAL)
    p["mu_trab"] = u(*MU_TRABECULAR)
    p["mu_cort_l"] = min(MU_CORTICAL[1], max(MU_CORTICAL[0], p["mu_cort"] * u(0.96, 1.04)))
    p["mu_trab_l"] = min(MU_TRABECULAR[1], max(MU_TRABECULAR[0], p["mu_trab"] * u(0.9, 1.1)))
    # subchondral plate: dense, homogeneous bone between trabecular and cortical density (the
    # extruded plate is crossed over its full chord, so full cortical density would glare)
    p["plate_f"] = u(0.45, 0.85)
    # plates, constant end region (>= max(1 mm, 6 px) beyond the plate margin)
    tp_min = max(0.5, min(6.0 * spacing, 1.5))
    p["tp_u"] = max(tp_min, u(0.5, 1.0))
    p["tp_l"] = max(tp_min, u(0.5, 1.0))
    p["lc_u"] = max(1.0, p["tp_u"] + 0.5) + u(0.0, 0.6)
    p["lc_l"] = max(1.0, p["tp_l"] + 0.5) + u(0.0, 0.6)
    # proximal bone (upper)
    p["a_h"] = u(3.5, 5.5) * s  # head half-width (x)
    p["b_h"] = p["a_h"] * u(0.7, 0.95)  # head half-thickness (z)
    p["a_s"] = p["a_h"] * u(0.55, 0.78)  # shaft
    p["b_s"] = p["a_s"] * u(0.8, 1.05)
    p["lf_u"] = u(2.0, 5.5) * s  # flare (metaphysis) length
    p["tc_h"] = u(0.15, 0.35) * s  # head cortex
    p["tc_s"] = min(u(0.5, 1.1) * s, 0.45 * min(p["a_s"], p["b_s"]))  # shaft cortex
    p["kappa"] = u(0.15, 0.9) * s  # end-profile curvature (sides rise by kappa)
    p["kappa2"] = u(0.15, 0.8) * s  # corner rounding (xi^8 term)
    p["notch"] = u(0.05, 0.4) * s  # intercondylar notch depth
    p["notch_w"] = u(0.12, 0.3)  # notch width, fraction of the half-width
    p["asym"] = u(-0.08, 0.08) * s  # condyle asymmetry (xi^3 term)
    p["trab_shaft"] = u(0.1, 0.5)  # medullary cavity: fraction of the trabecular excess left in the shaft
    p["cu"] = u(-0.3, 0.3) * s  # bone axis relative to the finger centre
    # distal bone (lower)
    p["a_lb"] = p["a_h"] * u(0.85, 1.06)
    p["b_lb"] = p["a_lb"] * u(0.7, 0.95)
    p["a_ls"] = p["a_lb"] * u(0.55, 0.78)
    p["b_ls"] = p["a_ls"] * u(0.8, 1.05)
    p["lf_l"] = u(1.5, 4.5) * s
    p["tc_lh"] = u(0.15, 0.35) * s
    p["tc_ls"] = min(u(0.5, 1.1) * s, 0.45 * min(p["a_ls"], p["b_ls"]))
    p["trab_shaft_l"] = u(0.1, 0.5)
    p["off_l"] = u(-0.4, 0.4) * s  # lateral offset of the distal bone
    p["lip"] = u(0.1, 0.6) * s  # lateral lips of the base
    # gap variation delta(x) >= 0, amplitude shrunk for small JSW
    J = p["jsw"]
    p["d_amp"] = u(0.0, 1.0) * min(0.12, 0.4 * J)
    p["d_beta"] = u(0.0, 1.0)
    p["d_odd"] = u(0.0, 1.0) * min(0.03, 0.1 * J)
    # soft tissue
    cl = p["cu"] + p["off_l"]
    core_a = max(p["a_h"] + abs(p["cu"]), p["a_lb"] + abs(cl)) + u(0.5, 1.5) * s
    core_b = max(p["b_h"], p["b_lb"]) + u(0.8, 2.0) * s
    fat = u(1.0, 2.5) * s
    p["core_a"], p["core_b"] = core_a, core_b
    p["fat_a"], p["fat_b"] = core_a + fat, core_b + fat * u(0.8, 1.2)
    p["bulge"] = u(0.0, 0.12)
    p["bulge_len"] = u(2.0, 5.0) * s
    p["taper"] = u(-0.04, 0.01)  # relative width change per 10 mm towards the distal end
    # trabecular texture
    p["tex_sigma"] = u(0.12, 0.45)  # mm, grain size
    p["tex_aniso"] = u(1.0, 2.0)  # elongation along the bone axis
    p["tex_contrast"] = u(0.1, 0.35)
    return p


def _smoothstep(t):
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _head_profile(xi, P):
    """Upper bone end y_end (mm, y down) relative to Y0 as a function of xi = (x − cu)/a_h."""
    xi = xi.clamp(-1.0, 1.0)
    x2 = xi * xi
    x8 = (x2 * x2) * (x2 * x2)
    return -P["kappa"] * x2 - P["kappa2"] * x8 - P["notch"] * torch.exp(-x2 / (P["notch_w"] ** 2)) + P["asym"] * xi * x2


def _delta(xi, P):
    xi = xi.clamp(-1.0, 1.0)
    even = P["d_beta"] * xi * xi + (1.0 - P["d_beta"]) * 0.5 * (1.0 - torch.cos(math.pi * xi))
    return P["d_amp"] * even + P["d_odd"] * 0.5 * (1.0 + xi)


def _lip(x, P):
    r = ((x - P["cu"]).abs() - P["a_h"] - 0.2) / 0.6
    return P["lip"] * _smoothstep(r)


def _finish_geometry(P: dict, fine: int = 2001) -> None:
    """g0 (true JSW), Y0 and the head/base extents, from the per-sample tensors in P (float64)."""
    cu, cl = P["cu"], P["cu"] + P["off_l"]
    x_lo = torch.maximum(cu - P["a_h"], cl - P["a_lb"])
    x_hi = torch.minimum(cu + P["a_h"], cl + P["a_lb"])
    q = 0.25 * (x_hi - x_lo)
    t = torch.linspace(0.0, 1.0, fine, dtype=torch.float64).view(1, -1)
    xs = (x_lo + q).view(-1, 1) + t * (0.5 * (x_hi - x_lo)).view(-1, 1)
    V = {k: v.view(-1, 1) for k, v in P.items()}
    d = _delta((xs - V["cu"]) / V["a_h"], V)
    w = torch.ones_like(t)
    w[:, 0] = w[:, -1] = 0.5  # trapezoid
    mean_delta = (d * w).sum(-1) / w.sum()
    P["g0"] = P["jsw"] - mean_delta
    P["y0"] = -0.5 * P["g0"]
    V["g0"], V["y0"] = P["g0"].view(-1, 1), P["y0"].view(-1, 1)
    # top of the head region (min over the head of y_end) and bottom of the base (max of y_l)
    xi = torch.linspace(-1.0, 1.0, 513, dtype=torch.float64).view(1, -1)
    prof_u = V["y0"] + _head_profile(xi, V)
    P["yu_min"] = prof_u.amin(-1)
    xl = V["cu"] + V["off_l"] + xi * V["a_lb"]
    prof_l = V["y0"] + _head_profile((xl - V["cu"]) / V["a_h"], V) + V["g0"] + _delta((xl - V["cu"]) / V["a_h"], V) - _lip(xl, V)
    P["yl_max"] = prof_l.amax(-1)
    P["overlap_mm"] = x_hi - x_lo


# ----------------------------------------------------------------------------- texture
def _texture_fields(noise: torch.Tensor, P: dict, cell_mm: float) -> torch.Tensor:
    """Band-pass filtered, unit-variance noise fields (b,G,G) in the canonical frame."""
    b, G, _ = noise.shape
    f = torch.fft.fftfreq(G, d=cell_mm, device=noise.device, dtype=torch.float32)
    fr = torch.fft.rfftfreq(G, d=cell_mm, device=noise.device, dtype=torch.float32)
    fy, fx = f.view(1, G, 1), fr.view(1, 1, -1)
    sig = P["tex_sigma"].view(b, 1, 1).float()
    an = P["tex_aniso"].view(b, 1, 1).float()
    sy, sx = sig * an.sqrt(), sig / an.sqrt()  # elongated along y (the bone axis)
    r2 = (sy * fy) ** 2 + (sx * fx) ** 2
    tf = torch.exp(-2.0 * math.pi**2 * r2) - torch.exp(-2.0 * math.pi**2 * 4.0 * r2)  # DoG band-pass
    out = torch.fft.irfft2(torch.fft.rfft2(noise) * tf, s=(G, G))
    out = out - out.mean(dim=(1, 2), keepdim=True)
    return out / out.std(dim=(1, 2), keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------------------- rendering
def _render_chunk(P: dict, tex_field: torch.Tensor, tex_half_mm: float, H: int, W: int, sp: float, device) -> tuple:
    """Render b phantoms; P holds (b,) float32 tensors on ``device``. Returns soft, upper, lower (b,H,W)."""
    b = P["tilt"].shape[0]
    V = {k: v.view(b, 1, 1, 1) for k, v in P.items()}
    sub_y = torch.tensor(_SUB_Y, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    sub_x = torch.tensor(_SUB_X, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    iy = torch.arange(H, device=device, dtype=torch.float32).view(1, 1, H, 1)
    jx = torch.arange(W, device=device, dtype=torch.float32).view(1, 1, 1, W)
    th = torch.deg2rad(V["tilt"])
    c, s = torch.cos(th), torch.sin(th)
    # image mm relative to the joint centre, then canonical: y_c = c·y − s·x, x_c = s·y + c·x
    yi = (iy + sub_y - 0.5 * H) * sp - V["jit_y"]  # (b,16,H,1)
    xi = (jx + sub_x - 0.5 * W) * sp - V["jit_x"]  # (b,16,1,W)
    Y = c * yi - s * xi  # (b,16,H,W)
    X = s * yi + c * xi

    # soft tissue: fat ellipse + core ellipse, bulge at the joint, slight taper
    fy = (1.0 + V["bulge"] * torch.exp(-(Y / V["bulge_len"]) ** 2)) * (1.0 + V["taper"] * Y / 10.0)

    def chord(x, a, bz):
        return 2.0 * bz * torch.sqrt(torch.clamp(1.0 - (x / a) ** 2, min=0.0))

    soft = V["mu_fat"] * chord(X, V["fat_a"] * fy, V["fat_b"] * fy) + (V["mu_soft"] - V["mu_fat"]) * chord(X, V["core_a"] * fy, V["core_b"] * fy)
    soft = 0.1 * soft.mean(dim=1)  # mm → cm
    del fy

    xi_u = (X - V["cu"]) / V["a_h"]
    y_end = V["y0"] + _head_profile(xi_u, V)

    def bone(depth, along, a0, b0, a1, b1, t0, t1, tp, trab_frac, xc, cz=None):
        """Cortical, trabecular and plate chord lengths, pixel means (b,H,W), of one bone.

        depth: distance into the bone from its articular end at z = 0 (>= 0 inside); along: 0 in
        the constant end region, rising to 1 at the shaft. cz (rounded ends only): the end
        recedes by ``cz·(z/b0)²`` away from z = 0, so at depth d only |z| <= b0·sqrt(d/cz) is bone."""
        sm = _smoothstep(along)
        a = a0 + (a1 - a0) * sm
        bz = b0 + (b1 - b0) * sm
        tc = t0 + (t1 - t0) * sm
        dx = X - xc
        out = chord(dx, a, bz)
        inn = chord(dx, a - tc, bz - tc)
        if cz is None:  # extruded end (the default phantom, unchanged)
            inside = depth >= 0
            plate = depth < tp
            zero = torch.zeros_like(out)
            cort = torch.where(inside & ~plate, out - inn, zero)
            trab = torch.where(inside & ~plate, inn * (1.0 + (trab_frac - 1.0) * sm), zero)
            pl = torch.where(inside & plate, out, zero)
            return cort.mean(dim=1), trab.mean(dim=1), pl.mean(dim=1)

        def zlim(d):  # half-extent in z of {depth(x, z) >= d}
            return b0 * torch.sqrt(torch.clamp(d, min=0.0) / cz)

        z0 = torch.minimum(0.5 * out, zlim(depth))
        zp = torch.minimum(0.5 * out, zlim(depth - tp))
        zpi = torch.minimum(0.5 * inn, zlim(depth - tp))
        cort = 2.0 * (zp - zpi)
        trab = 2.0 * zpi * (1.0 + (trab_frac - 1.0) * sm)
        pl = 2.0 * (z0 - zp)
        return cort.mean(dim=1), trab.mean(dim=1), pl.mean(dim=1)

    # upper (proximal) bone: y <= y_end(x)
    along_u = (V["yu_min"] - V["lc_u"] - Y) / V["lf_u"]
    rounded = "cz_u" in P
    cort_u, trab_u, plate_u = bone(y_end - Y, along_u, V["a_h"], V["b_h"], V["a_s"], V["b_s"], V["tc_h"], V["tc_s"], V["tp_u"], V["trab_shaft"], V["cu"],
                                   V["cz_u"] if rounded else None)
    # lower (distal) bone: y >= y_l(x) = y_end(x) + g0 + δ(x) − lip(x)
    y_l = y_end + V["g0"] + _delta(xi_u, V) - _lip(X, V)
    along_l = (Y - V["yl_max"] - V["lc_l"]) / V["lf_l"]
    cort_l, trab_l, plate_l = bone(Y - y_l, along_l, V["a_lb"], V["b_lb"], V["a_ls"], V["b_ls"], V["tc_lh"], V["tc_ls"], V["tp_l"], V["trab_shaft_l"], V["cu"] + V["off_l"],
                                   V["cz_l"] if rounded else None)
    del X, Y, y_end, y_l, xi_u

    # trabecular texture at the pixel centres (canonical frame)
    V3 = {k: v.view(b, 1, 1) for k, v in P.items()}
    c3, s3 = c.view(b, 1, 1), s.view(b, 1, 1)
    yc = (iy.view(1, H, 1) + 0.5 - 0.5 * H) * sp - V3["jit_y"]
    xc = (jx.view(1, 1, W) + 0.5 - 0.5 * W) * sp - V3["jit_x"]
    Yc = c3 * yc - s3 * xc
    Xc = s3 * yc + c3 * xc
    grid = torch.stack([Xc / tex_half_mm, Yc / tex_half_mm], dim=-1)  # (b,H,W,2), x first
    tex = F.grid_sample(tex_field.unsqueeze(1), grid, mode="bilinear", padding_mode="reflection", align_corners=True).squeeze(1)
    tex = (1.0 + V3["tex_contrast"] * tex).clamp_min(0.3)

    mu_plate_u = V3["mu_trab"] + V3["plate_f"] * (V3["mu_cort"] - V3["mu_trab"])
    mu_plate_l = V3["mu_trab_l"] + V3["plate_f"] * (V3["mu_cort_l"] - V3["mu_trab_l"])
    upper = 0.1 * ((V3["mu_cort"] - V3["mu_soft"]) * cort_u + (V3["mu_trab"] - V3["mu_soft"]) * tex * trab_u + (mu_plate_u - V3["mu_soft"]) * plate_u)
    lower = 0.1 * ((V3["mu_cort_l"] - V3["mu_soft"]) * cort_l + (V3["mu_trab_l"] - V3["mu_soft"]) * tex * trab_l + (mu_plate_l - V3["mu_soft"]) * plate_l)
    return soft, upper.clamp_min(0.0), lower.clamp_min(0.0)


def generate(
    n: int,
    size: int | Sequence[int] = 256,
    spacing_mm: float = 0.1,
    seed: int = 0,
    jsw_mm=None,
    *,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    tilt_deg=(-10.0, 10.0),
    texture: float = 1.0,
    end: str = "flat",
    progress: bool = False,
):
    """Generate ``n`` finger-joint phantoms with known JSW.

    Args:
        n: number of phantoms (int >= 1).
        size: image size, an int or (H, W), each >= 32 px.
        spacing_mm: pixel spacing, mm, in (0, 2]. The anatomy is in mm; fields of view under 24 mm
            get proportionally smaller lateral anatomy (``params["scale"]``).
        seed: int; sample i depends only on (seed, i).
        jsw_mm: true JSW per phantom, mm (>= 0): None (uniform in [0, 3] mm), a float, or n values.
        device, dtype: of the returned layers (rendered in float32).
        tilt_deg: finger tilt from vertical, degrees: a (lo, hi) range drawn uniformly, or a
            fixed number. Positive turns the proximal end towards +x (see ``axis_from_angle``).
        texture: scale of the trabecular texture's contrast (≥ 0): 1 is the phantom as drawn, 0
            gives textureless bone with every other draw unchanged (same shapes, densities, JSW
            and pose for the same seed), for ablations and oracle studies of what the texture
            costs. ``params["tex_contrast"]`` reports the scaled contrast.
        end: ``"flat"`` (default: ends extruded along the beam, projected margins are steps) or
            ``"round"``: rounded 3-D ends — each bone end also curves away from the other bone
            across the beam direction, ``y_end(x, z) = y_end(x) − cz_u·(z/b)²`` for the head and
            ``y_l(x, z) = y_l(x) + cz_l·(z/b)²`` for the base (``cz`` U(0.3, 1.0) mm, drawn from
            a separate stream, so every other draw is the same as the flat phantom of the seed).
            The base keeps its concave profile across x that mirrors the condyles; the closest
            points of the two ends stay at z = 0, so the projected gap in every column — and the
            true JSW — is the flat phantom's, while each projected margin now tapers like
            ``sqrt`` over several pixels (a rounded end seen tangentially) instead of a step.
            ``params["cz_u"]``, ``params["cz_l"]`` report them.
        progress: show a progress bar.
    Returns:
        (LayerStack with ``axis`` set to the true axis, info) with info = {"jsw_mm": (n,) float32
        true JSW, "axis": (n,2), "tilt_deg": (n,), "params": dict of (n,) float32 tensors,
        "spacing_mm", "seed"}.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    H, W = _check_size(size)
    sp = check_positive_float(spacing_mm, "spacing_mm")
    if sp > 2.0:  # a finger joint then spans a handful of pixels; far beyond it the area integration breaks
        raise ValueError(f"spacing_mm: the phantom supports pixels up to 2 mm, got {sp:g}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    tilt = _check_tilt(tilt_deg)
    jsw = _check_jsw(jsw_mm, n)
    if end not in ("flat", "round"):
        raise ValueError(f"end: expected 'flat' or 'round', got {end!r}")
    if isinstance(texture, bool) or not isinstance(texture, (int, float)) or not math.isfinite(texture) or texture < 0:
        raise ValueError(f"texture: expected a finite contrast scale >= 0, got {texture!r}")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"dtype: expected a floating dtype (float32, float16, bfloat16, float64), got {dtype}")
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA is not available here")

    fov = min(H, W) * sp
    # texture grid in the canonical frame, covering the rotated, jittered field of view
    tex_half = 0.5 * math.hypot(H, W) * sp + 0.1 * fov + 1.0
    cell = max(sp, 0.08)
    G = int(min(1024, math.ceil(2.0 * tex_half / cell) + 1))
    cell = 2.0 * tex_half / (G - 1)

    plist, noises = [], []
    for i in range(n):
        g = _sample_generator(seed, i)
        plist.append(_sample_params(g, None if jsw is None else float(jsw[i]), fov, sp, tilt))
        noises.append(torch.randn(G, G, generator=g))
    P64 = {k: torch.tensor([p[k] for p in plist], dtype=torch.float64) for k in plist[0]}
    _finish_geometry(P64)
    P64["tex_contrast"] = P64["tex_contrast"] * float(texture)  # after every draw: the RNG stream is unchanged
    if end == "round":  # own stream per sample: the flat phantom's draws are untouched
        cz = [torch.rand(2, generator=_sample_generator(seed ^ 0x5EED_0E7D, i), dtype=torch.float64) for i in range(n)]
        P64["cz_u"] = torch.stack([0.3 + 0.7 * c[0] for c in cz])
        P64["cz_l"] = torch.stack([0.3 + 0.7 * c[1] for c in cz])
    P = {k: v.to(torch.float32) for k, v in P64.items()}

    per = max(1, _CHUNK_SUBSAMPLES // (SUBSAMPLES * H * W))
    soft = torch.empty(n, H, W, device=device, dtype=dtype)
    upper = torch.empty_like(soft)
    lower = torch.empty_like(soft)
    steps = range(0, n, per)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="phantoms", unit="img")
        except ImportError:  # pragma: no cover
            bar = None
    with torch.no_grad():
        for b0 in steps:
            b1 = min(n, b0 + per)
            Pc = {k: v[b0:b1].to(device) for k, v in P.items()}
            noise = torch.stack(noises[b0:b1]).to(device)
            field = _texture_fields(noise, Pc, cell)
            s_, u_, l_ = _render_chunk(Pc, field, tex_half, H, W, sp, device)
            soft[b0:b1], upper[b0:b1], lower[b0:b1] = s_.to(dtype), u_.to(dtype), l_.to(dtype)
            if bar is not None:
                bar.update(b1 - b0)
    if bar is not None:
        bar.close()

    axis = axis_from_angle(P["tilt"]).to(device)
    stack = LayerStack(soft, upper, lower, sp, axis=axis, validate=False)
    params = {k: v.clone() for k, v in P.items()}
    info = {
        "jsw_mm": P64["jsw"].to(torch.float32),
        "axis": axis_from_angle(P["tilt"]),
        "tilt_deg": P["tilt"].clone(),
        "params": params,
        "spacing_mm": sp,
        "seed": seed,
    }
    return stack, info
