"""Joint space width (JSW) from the bone layers (DESIGN.md §4, "JSW definition").

JSW is the physical gap between the two bones measured along lines parallel to the joint axis:
on each line, from the upper (proximal) bone's lower margin to the lower (distal) bone's upper
margin; JSW is the mean gap over the central half of the lines that cross both bones (the
minimum and the per-line profile are reported too).

Sub-pixel margins: boundary sums and a power-law end
---------------------------------------------------
Pixels integrate over their area, so a margin lies *inside* its edge pixel. Each bone layer is
sampled along lines parallel to the axis (1-px perpendicular spacing, 1-px steps, bilinear); a
sample ``k`` stands for the interval ``[k, k+1)`` along the line, ``t`` increasing from the
upper bone towards the lower one (the lower bone is handled as the mirror image). The edge
sample ``e`` is the last sample with ``f >= 0.25·peak`` of the line.

The rule works with *boundary sums* ``S(b) = Σ_{k>=b} f[k]`` (the samples from ``b`` out to the
last non-zero sample past the edge). Because the samples are area integrals and bilinear
interpolation is a partition of unity, ``S(b)`` is the integral of the bone's projected
thickness from ``b`` outwards — also for tilted lines, for the sub-pixel translations of
:meth:`LayerStack.shifted`, and for any symmetric blur, as long as the profile is locally
linear around ``b`` (true a few pixels inside the edge). Near its support end ``m`` a bone end's
projected thickness behaves as ``c·(m − t)^p``: ``p = 0`` for a flat (extruded) end or a plate
(a step), ``p = 1/2`` for any smooth convex end seen tangentially (sphere, ellipsoid, condyle:
the chord of a sphere is ``2·sqrt(u(2R − u))``), ``p = 1`` for a wedge or the rim of a concave
base, so ``S(b) = c/(p+1)·(m − b)^(p+1)``. Three boundary sums determine ``(c, p, m)`` in closed
form (one monotone equation in ``m − b``, solved on a log grid):

The fit is used on **sharp** lines only: beyond the line's last sample above ``3e−5·h`` there is
nothing but exact zeros (a ground-truth rendering; one sample of interpolation rounding is
tolerated). Blurred layers (separated by the LSN, blurred in tests) have a long tail of tiny
values there, and a blurred step cannot be told from a taper on one profile, so on blurred
lines the covered-fraction rule of earlier versions is kept: ``e`` as above, ``k_in = e − 3``,
``margin = k_in + 1 + Σ_{j=1..5} f[k_in + j] / f[k_in]`` (exact for steps, within 0.001 mm for a
Gaussian blur of σ <= 0.75 px, ~0.3 px narrow at σ = 1.5 px), except that where one of
``f[e−2], f[e−1]`` is brighter than ``f[k_in]`` by 5 % (a dense end plate thinner than 3 px) the
brightest of the three is the reference. On sharp lines:

1. *narrow* window ``b = e−3, e−2, e−1``: used where it finds a clear taper (``p > 0.3``) and
   the wide window (2.) fails (a step smoothed by an interpolation — sub-pixel shifts,
   rotations — looks tapered at the narrow scale only);
2. else the *wide* window ``b = e−4, e−3, e−2`` where it fits with ``0 < p <= 2``: robust to the
   footprint of tilted lines and to blur; a straight or blurred step gives ``p = 0`` exactly;
3. the *tip* window ``b = ke−3, ke−2, ke−1`` (``ke``: the line's last non-zero sample) replaces
   both where it finds a taper (``p > 0.3``) and the wide window does not read a step: a thin,
   dense end (a subchondral plate, a cortical shell seen tangentially) keeps the power law over
   its last few pixels only, and the windows anchored at ``e`` then lie behind it;
4. the fitted margin is kept only where a fit found a real taper (``p > 0.3``). Steps
   (``p <= 0.3``: flat ends, plates, their interpolated moves) and failed fits take a covered
   fraction: on sharp lines *from the tip*, ``margin = k* + Σ_{k>=k*} f[k] / f[k*]`` with ``k*``
   the brightest of ``ke−3 … ke−1``, where that sample is 5 % brighter than ``f[e−3]`` (a thin
   bright end plate is the step's own level, the samples behind it are not; a step blurred by a
   compact kernel also ends in exact zeros, but its last samples are its blur skirt, dimmer than
   the bone); elsewhere the covered fraction above.

Measured on ground-truth layers (lab/2026-12-07-jsw-jsn-independent/, MAE): main phantom flat
ends 0.001 mm (also after sub-pixel moves and a σ = 0.75 px Gaussian blur), rounded ends
(``phantom.generate(end="round")``) 0.065 mm (0.074 before the tip window, 0.25 mm with the
covered fraction alone); the independent ray-cast renderer (:mod:`lsn_fast.physics.raycast`):
spheres 0.059, flat ends with thin bright plates 0.087 mm (0.15 / 0.45 mm before).

**Limits**: the power law must hold over the last 3 px of the end; a cortical shell thinner than
that (1.5–3.5 px on the ray-cast renderer) leaves rounded ends ~0.05 mm wide, and tilted thin
plates up to 0.3 mm off on single joints. A blurred *rounded* end reads too narrow by about the
blur's width (blur and taper are not separable from one profile). The 0.02 mm target of issue 34
is not met on rounded ends.

Validity and flags
------------------
A line is valid where both bones are present on it (its peak is >= 0.2 × the sample's largest
peak over all lines, for each bone), its windows are inside the image and positive, and the
margins are ordered (the lower bone's margin is not more than a pixel above the upper bone's).
The central half is the middle 50 % of the valid lines' offset range. A sample whose crop is
unmeasurable or doubtful gets ``NaN`` and a bit in ``JSWMeasurement.flags`` (see
:data:`FLAG_NAMES`, :func:`flag_reasons`) instead of a plausible number:

* ``no_bone``: a bone layer is empty; ``no_crossing``: no line crosses both bones;
* ``overlap``: on >= 20 % of the lines crossing both bones the bones overlap (gap < −0.5 px);
* ``out_of_frame``: on >= 50 % of those lines a margin lies within 2 px of the image border,
  or the joint's lines run out of the image (the gap leaves the frame);
* ``no_margins``: on >= 50 % of those lines a margin is not found;
* ``few_lines``: fewer than 5 central lines;
* ``inconsistent``: the central lines disagree: the median absolute deviation of their gaps
  around a straight-line fit across the lines exceeds ``max(1 px, 0.25 × the median gap)``.

Everything is vectorized over the batch and the lines and computed in float32 (also for
float16/bfloat16/float64 layers), on the layers' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from typing import TYPE_CHECKING

from lsn_fast.physics.axis import normalize_axis

if TYPE_CHECKING:  # jsw sits below layers (LayerStack's methods measure through it)
    from lsn_fast.physics.layers import LayerStack

INNER_PX = 3  # w: how far inside the edge sample the fully covered reference sample lies
EDGE_LEVEL = 0.25  # fraction of a line's peak that marks the edge sample
LINE_PRESENT = 0.2  # a bone is present on a line if its peak >= this × the sample's max peak
_CHUNK_ELEMS = 1 << 23  # samples per grid_sample call (bounds memory for large batches)
EDGE_EPS = 3e-5  # relative level of the last sample past the edge that still belongs to the bone
TAPER_P = 0.3  # the narrow window is used where it finds p above this (a clear taper)
NARROW = (3, 2, 1)  # boundaries e − k of the narrow window
WIDE = (4, 3, 2)  # boundaries e − k of the wide window
TIP = (3, 2, 1)  # boundaries ke − k of the tip window (ke: the last sample of the bone)
PLATE_RATIO = 1.05  # an end sample this much brighter than the bone 3 px inside it is a dense end plate
STEP_BACK = 3  # sharp steps: the covered fraction against the brightest of samples ke−3 … ke−1
_D_GRID = torch.logspace(-3, 3, 481, dtype=torch.float64)  # candidates for m − b (px)

# flags (bits of JSWMeasurement.flags); any set flag makes the sample's JSW NaN
FLAG_NAMES = {1: "no_bone", 2: "no_crossing", 4: "overlap", 8: "out_of_frame", 16: "no_margins",
              32: "few_lines", 64: "inconsistent"}
MIN_CENTRAL_LINES = 5

__all__ = ["JSWMeasurement", "estimate_axis", "measure_jsw", "measure_jsw_profile", "flag_reasons", "FLAG_NAMES"]


def flag_reasons(flags) -> list[list[str]]:
    """The names of the set bits of ``flags`` ((B,) ints, e.g. ``JSWMeasurement.flags``), per sample."""
    t = torch.as_tensor(flags).reshape(-1).tolist()
    return [[n for b, n in FLAG_NAMES.items() if int(v) & b] for v in t]


@dataclass
class JSWMeasurement:
    """Result of :func:`measure_jsw_profile`.

    Attributes:
        jsw_mm: (B,) float32 mean gap over the central lines, mm; NaN where no line crosses
            both bones.
        min_mm: (B,) float32 smallest gap over the central lines, mm (NaN likewise).
        profile_mm: (B,S) float32 gap per line, mm; NaN where the line is not valid.
        offsets_px: (S,) float32 perpendicular offset of each line from the image centre, px
            (increasing towards +x for a vertical finger).
        central: (B,S) bool, the lines the mean and the minimum are taken over.
        axis: (B,2) float32 unit (dy, dx) axis used, from the lower towards the upper bone.
        flags: (B,) int32 bit mask of the reasons a sample is NaN (0: measured), see
            :data:`FLAG_NAMES` and :func:`flag_reasons`.
        end_exponent: (B,2,S) float32 exponent ``p`` of the fitted end ``c·(m − t)^p`` per line,
            upper then lower bone (0: a step; about 0.5: a rounded end; NaN off the valid lines).
    """

    jsw_mm: torch.Tensor
    min_mm: torch.Tensor
    profile_mm: torch.Tensor
    offsets_px: torch.Tensor
    central: torch.Tensor
    axis: torch.Tensor
    flags: torch.Tensor | None = None
    end_exponent: torch.Tensor | None = None

    @property
    def reasons(self) -> list[list[str]]:
        """Per sample, the names of the set flags (empty where measured)."""
        return flag_reasons(self.flags if self.flags is not None else torch.zeros(self.jsw_mm.shape[0], dtype=torch.int32))


def _check_stack(stack) -> LayerStack:
    if type(stack).__name__ != "LayerStack" or not all(hasattr(stack, a) for a in ("upper", "lower", "spacing_mm", "axis")):
        raise TypeError(f"stack: expected an lsn_fast.LayerStack, got {type(stack).__name__}")
    return stack


# ----------------------------------------------------------------------------- axis
def _smooth_grad(x: torch.Tensor, sigma: float = 1.0):
    """Gaussian-derivative gradients (gy, gx) of (B,H,W) float32, zero padding."""
    r = int(math.ceil(3 * sigma))
    k = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    g = g / g.sum()
    # conv2d correlates: out[i] = Σ_k K[k]·x[i+k]; the derivative of the smoothed image needs
    # K[k] = g'(−k) = (k/σ²)·g(k). One 2-output-channel conv (faster than 4 separable passes).
    dk = k / (sigma * sigma) * g
    kern = torch.stack([dk.view(-1, 1) * g.view(1, -1), g.view(-1, 1) * dk.view(1, -1)]).unsqueeze(1)
    out = F.conv2d(x.unsqueeze(1), kern, padding=r)
    return out[:, 0], out[:, 1]


def estimate_axis(stack: LayerStack) -> torch.Tensor:
    """Estimate the joint axis from the bone layers.

    The bone outlines are made of edges parallel to the axis (shaft and head sides) and
    perpendicular to it (the articular margins, the plates); curved parts (condyles, flares)
    come in mirror pairs about the axis. The four-fold orientation moment of the gradients,
    ``Σ |∇f|²·exp(4iψ)`` (ψ the gradient angle, Gaussian derivatives with σ = 1 px, image borders
    excluded so the crop does not count), therefore points at the axis modulo 90°; of those four
    directions the one closest to the direction from the lower bone's mass centroid to the upper
    bone's is returned. Pixels within 4 px of the border are ignored.

    Args:
        stack: a LayerStack (any float dtype; computed in float32).
    Returns:
        (B,2) float32 unit (dy, dx) vectors (lower → upper bone) on the stack's device; the
        centroid direction where the edges are degenerate, and ``(-1, 0)`` for a sample whose
        bone layers are empty.
    """
    _check_stack(stack)
    B, H, W = stack.shape
    dev = stack.device
    U = stack.upper.to(torch.float32)
    L = stack.lower.to(torch.float32)
    yy = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5 - 0.5 * H).view(1, H, 1)
    xx = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5 - 0.5 * W).view(1, 1, W)

    def centroid(m):
        s = m.sum(dim=(1, 2))
        sd = s.clamp_min(1e-30)
        return torch.stack([(m * yy).sum(dim=(1, 2)) / sd, (m * xx).sum(dim=(1, 2)) / sd], -1), s

    cU, mU = centroid(U)
    cL, mL = centroid(L)
    default = torch.tensor([-1.0, 0.0], device=dev).expand(B, 2)
    a = cU - cL
    n = a.norm(dim=-1, keepdim=True)
    ok = (mU > 0) & (mL > 0) & (n.squeeze(-1) > 1e-6)
    a = torch.where(ok[:, None], a / n.clamp_min(1e-12), default)

    # four-fold orientation moment of the edges, summed over both bones
    re = torch.zeros(B, device=dev)
    im = torch.zeros(B, device=dev)
    tot = torch.zeros(B, device=dev)
    m = 4
    inner = torch.zeros(1, H, W, device=dev)
    if H > 2 * m and W > 2 * m:
        inner[:, m:-m, m:-m] = 1.0
    for lay in (U, L):
        gy, gx = _smooth_grad(lay)
        # with z = gx + i·gy (angle ψ), z^4 / |z|^2 = |z|^2 e^{4iψ}
        c2r = gx * gx - gy * gy
        c2i = 2.0 * gx * gy
        mag2 = (gx * gx + gy * gy).clamp_min(1e-30)
        re = re + ((c2r * c2r - c2i * c2i) / mag2 * inner).sum(dim=(1, 2))
        im = im + ((2.0 * c2r * c2i) / mag2 * inner).sum(dim=(1, 2))
        tot = tot + (mag2 * inner).sum(dim=(1, 2))
    psi = 0.25 * torch.atan2(im, re)  # gradient angle (x→y) of the dominant edges, mod 90°
    # candidate directions (dy, dx) = (sin, cos)(psi + k·90°); pick the closest to the centroid axis
    k = torch.arange(4, device=dev, dtype=torch.float32) * (math.pi / 2)
    ang = psi[:, None] + k[None, :]
    cand = torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1)  # (B,4,2)
    best = (cand * a[:, None, :]).sum(-1).argmax(dim=-1)
    d = cand[torch.arange(B, device=dev), best]
    strong = ok & (torch.sqrt(re * re + im * im) > 0.05 * tot)
    return torch.where(strong[:, None], d, a).contiguous()


def _resolve_axis(stack: LayerStack, axis) -> torch.Tensor:
    if axis is not None:
        a = normalize_axis(axis, stack.batch_size, stack.device)
    elif stack.axis is not None:
        a = stack.axis
    else:
        a = estimate_axis(stack)
    return a.to(device=stack.device, dtype=torch.float32)


# ----------------------------------------------------------------------------- sampling
def _line_samples(layers: torch.Tensor, axis: torch.Tensor, R: int) -> torch.Tensor:
    """Sample (B,C,H,W) float32 layers along lines parallel to ``axis``.

    Line ``o`` (offset, px, along perp = (-d_x, d_y) with d = −axis), sample ``t``: the point
    ``c + o·perp + t·d`` (edge coordinates), c = (floor(H/2)+0.5, floor(W/2)+0.5), o, t in
    [−R, R]. Returns (B, C, S, T) with S = T = 2R+1, t increasing from the upper bone to the
    lower one. Bilinear, zeros outside the image.
    """
    B, C, H, W = layers.shape
    dev = layers.device
    r = torch.arange(-R, R + 1, device=dev, dtype=torch.float32)
    d = -axis  # (B,2) (dy, dx), from upper towards lower
    py, px = -d[:, 1], d[:, 0]  # perpendicular, (dy, dx)
    cy, cx = math.floor(H / 2) + 0.5, math.floor(W / 2) + 0.5
    o = r.view(1, -1, 1)
    t = r.view(1, 1, -1)
    Y = cy + o * py.view(B, 1, 1) + t * d[:, 0].view(B, 1, 1)
    X = cx + o * px.view(B, 1, 1) + t * d[:, 1].view(B, 1, 1)
    grid = torch.stack([X * (2.0 / W) - 1.0, Y * (2.0 / H) - 1.0], dim=-1)  # (B,S,T,2) (x, y)
    return F.grid_sample(layers, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _margins(f: torch.Tensor, upper: bool, w: int):
    """Sub-pixel margin per line from samples f (B,S,T). Returns (margin, peak, ok)."""
    T = f.shape[-1]
    peak = f.amax(dim=-1)
    tt = torch.arange(T, device=f.device)
    above = (f >= EDGE_LEVEL * peak.unsqueeze(-1)) & (peak.unsqueeze(-1) > 0)
    js = torch.arange(1, w + 3, device=f.device)
    if upper:
        e = torch.where(above, tt, torch.full_like(tt, -1)).amax(dim=-1)
        k_in = e - w
        idx = k_in.unsqueeze(-1) + js
    else:
        s = torch.where(above, tt, torch.full_like(tt, T)).amin(dim=-1)
        k_in = s + w
        idx = k_in.unsqueeze(-1) - js
    # a dense end plate thinner than w: the brightest of k_in … k_in ± 2 (towards the edge) is the
    # step's level where it is brighter than the bone at k_in
    cand = torch.stack([k_in + (j if upper else -j) for j in range(3)], -1).clamp(0, T - 1)
    vals_c = torch.gather(f, -1, cand)
    h0 = torch.gather(f, -1, k_in.clamp(0, T - 1).unsqueeze(-1)).squeeze(-1)
    kb = torch.gather(cand, -1, vals_c.argmax(-1, keepdim=True)).squeeze(-1)
    k_in = torch.where(vals_c.amax(-1) > PLATE_RATIO * h0, kb, k_in)
    idx = k_in.unsqueeze(-1) + js if upper else k_in.unsqueeze(-1) - js
    inside = (k_in >= 0) & (k_in <= T - 1)
    h = torch.gather(f, -1, k_in.clamp(0, T - 1).unsqueeze(-1)).squeeze(-1)
    in_range = (idx >= 0) & (idx <= T - 1)
    vals = torch.gather(f, -1, idx.clamp(0, T - 1)) * in_range
    ok = inside & (h > 0.1 * peak) & (peak > 0)
    ratio = vals.sum(dim=-1) / torch.where(ok, h, torch.ones_like(h))
    kf = k_in.to(f.dtype)
    margin = kf + 1.0 + ratio if upper else kf - ratio
    return margin, peak, ok


def _take(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, -1, k.clamp(0, x.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)


def _power_law_fit(rev: torch.Tensor, ref: torch.Tensor, off):
    """Fit ``S(b) = c/(p+1)·(m − b)^(p+1)`` through the boundary sums at ``b = ref − off``.

    rev: (..., T) float64 boundary sums; ref: (...) long. Returns (m, p, ok)."""
    b0, b1, b2 = ref - off[0], ref - off[1], ref - off[2]
    sa, sb, sc = _take(rev, b0), _take(rev, b1), _take(rev, b2)
    ok = (b0 >= 1) & (sc > 0) & (sb > sc) & (sa > sb)
    d01, d12 = float(off[0] - off[1]), float(off[1] - off[2])
    la = torch.log((sa / sb.clamp_min(1e-300)).clamp_min(1 + 1e-12))
    lb = torch.log((sb / sc.clamp_min(1e-300)).clamp_min(1 + 1e-12))
    obs = la / lb  # = log((D+d12+d01)/(D+d12)) / log((D+d12)/D), increasing in D = m − b2
    D = _D_GRID.to(rev.device)
    model = torch.log((D + d12 + d01) / (D + d12)) / torch.log((D + d12) / D)
    i1 = torch.searchsorted(model, obs.contiguous()).clamp(1, D.numel() - 1)
    m0, m1 = model[i1 - 1], model[i1]
    fr = ((obs - m0) / (m1 - m0)).clamp(0, 1)
    De = D[i1 - 1] + fr * (D[i1] - D[i1 - 1])
    q = lb / torch.log((De + d12) / De)  # p + 1
    ok = ok & (q > 0.9) & (q <= 3.0) & (obs < model[-1])  # q slightly < 1: a step, up to rounding
    return b2.double() + De, q - 1.0, ok


def _end_margins(f: torch.Tensor, upper: bool):
    """Sub-pixel margin per line (module docstring). f (B,S,T) float32 → (margin, peak, ok, p)."""
    g = (f if upper else f.flip(-1)).double()
    T = g.shape[-1]
    tt = torch.arange(T, device=g.device)
    peak = g.amax(dim=-1, keepdim=True)
    e = torch.where((g >= EDGE_LEVEL * peak) & (peak > 0), tt, torch.full_like(tt, -1)).amax(dim=-1, keepdim=True)
    hloc = torch.where((tt >= e - 6) & (tt <= e), g, torch.zeros_like(g)).amax(dim=-1, keepdim=True)
    above = (g > EDGE_EPS * hloc) & (tt >= e) & (tt <= e + 8)
    ke = torch.where(above, tt, torch.full_like(tt, -1)).amax(dim=-1)
    rev = torch.flip(torch.cumsum(torch.flip(g * (tt <= ke.unsqueeze(-1)), [-1]), -1), [-1])
    e1 = e.squeeze(-1)
    mw, pw, okw = _power_law_fit(rev, e1, WIDE)
    mn, pn, okn = _power_law_fit(rev, e1, NARROW)
    tail = (tt > ke.unsqueeze(-1)) & (tt <= ke.unsqueeze(-1) + 6) & (g > 1e-12 * hloc)
    sharp = tail.sum(dim=-1) <= 1  # one sample of interpolation rounding is tolerated
    # the narrow window only where the wide one fails: a step smoothed by an interpolation
    # (sub-pixel shifts, rotations) looks tapered at the narrow scale only
    nar = sharp & okn & (pn > TAPER_P) & ~okw
    m = torch.where(nar, mn, mw)
    p = torch.where(nar, pn, pw).clamp_min(0.0)
    # the tip window (the last samples of the bone) where it sees a taper and the wide window
    # does not see a step: a thin dense end (plate, cortex) keeps the power law only there; an
    # interpolated step looks tapered at the tip too, but the wide window reads it as a step
    mt, pt, okt = _power_law_fit(rev, ke, TIP)
    tip = sharp & okt & (pt > TAPER_P) & (ke - TIP[0] >= 1) & ~(okw & (pw <= TAPER_P))
    m = torch.where(tip, mt, m)
    p = torch.where(tip, pt.clamp_min(0.0), p)
    pk = peak.squeeze(-1)
    ok = (nar | okw | tip) & (e1 >= WIDE[0] + 1) & (ke < T - 1) & (pk > 0)
    # a step seen from its tip: the covered fraction against the brightest of the last samples
    # (a thin bright end plate is the step's own level; the samples behind it are not)
    win = (tt >= (ke - STEP_BACK).unsqueeze(-1)) & (tt <= (ke - 1).unsqueeze(-1))
    ks = torch.where(win, g, torch.full_like(g, -1.0)).argmax(dim=-1)
    hs = _take(g, ks)
    ms = ks.double() + _take(rev, ks) / hs.clamp_min(1e-300)
    # only where that sample is a plate brighter than the bone behind the edge (k_in = e − 3): a
    # step blurred by a compact kernel also ends in exact zeros, and its tip is its blur skirt
    oks = (hs > 0.1 * pk) & (ke >= STEP_BACK + 1) & (ke < T - 1) & (hs > PLATE_RATIO * _take(g, e1 - INNER_PX))
    if not upper:
        m = T - m
        ms = T - ms
    return m.to(torch.float32), pk.to(torch.float32), ok, p.to(torch.float32), sharp, ms.to(torch.float32), oks


def measure_jsw_profile(stack: LayerStack, axis=None) -> JSWMeasurement:
    """Measure the JSW per line and its central-half mean (DESIGN.md §4; rule and flags in the
    module docstring).

    Args:
        stack: LayerStack (B,H,W), any float dtype, CPU or CUDA (computed in float32/64).
        axis: joint axis override: an angle in degrees, a (2,) or (B,2) (dy, dx) tensor; default
            ``stack.axis``, else :func:`estimate_axis`.
    Returns:
        :class:`JSWMeasurement`; ``jsw_mm``/``min_mm`` NaN where ``flags`` is non-zero.
    """
    _check_stack(stack)
    B, H, W = stack.shape
    dev = stack.device
    a = _resolve_axis(stack, axis)
    R = int(math.ceil(0.5 * math.hypot(H, W))) + INNER_PX + 3
    S = 2 * R + 1
    layers = torch.stack([stack.upper, stack.lower], dim=1).to(torch.float32)
    per = max(1, _CHUNK_ELEMS // (2 * S * S))
    out = {k: [] for k in ("mu", "ml", "oku", "okl", "pu", "pl", "eu", "el")}
    for b0 in range(0, B, per):
        f = _line_samples(layers[b0 : b0 + per], a[b0 : b0 + per], R)
        for key, k, up in (("u", 0, True), ("l", 1, False)):
            m_, pk_, ok_, p_, sharp_, ms_, oks_ = _end_margins(f[:, k], up)
            # blurred lines (not sharp): the covered-fraction rule of earlier versions, unchanged
            mc_, _, okc_ = _margins(f[:, k], up, INNER_PX)
            # sharp steps: from the tip (thin bright end plates); blurred steps: as before
            tip_step = sharp_ & oks_
            mc_ = torch.where(tip_step, ms_, mc_)
            okc_ = okc_ | tip_step
            fit = sharp_ & ok_ & (p_ > TAPER_P)  # elsewhere (steps, blurred lines, no fit) the covered fraction
            m_ = torch.where(fit, m_, mc_)
            ok_ = torch.where(fit, ok_, okc_)
            p_ = torch.where(fit, p_, torch.zeros_like(p_))
            out["m" + key].append(m_), out["ok" + key].append(ok_), out["p" + key].append(pk_), out["e" + key].append(p_)
        del f
    mu, ml = torch.cat(out["mu"]), torch.cat(out["ml"])
    pu, pl = torch.cat(out["pu"]), torch.cat(out["pl"])
    oku, okl = torch.cat(out["oku"]), torch.cat(out["okl"])
    gap_px = ml - mu
    present = (pu >= LINE_PRESENT * pu.amax(dim=-1, keepdim=True)) & (pl >= LINE_PRESENT * pl.amax(dim=-1, keepdim=True))
    present = present & (pu > 0) & (pl > 0)
    # where on the image each margin lies (sample k stands for [k, k+1): t = m − ½ − R)
    offsets = torch.arange(-R, R + 1, device=dev, dtype=torch.float32)
    d = -a
    cy, cx = math.floor(H / 2) + 0.5, math.floor(W / 2) + 0.5
    o = offsets.view(1, S)

    def inside(mg):
        t = mg - 0.5 - R
        Y = cy + o * (-d[:, 1:2]) + t * d[:, 0:1]
        X = cx + o * d[:, 0:1] + t * d[:, 1:2]
        return (Y >= 2) & (Y <= H - 2) & (X >= 2) & (X <= W - 2)

    framed = inside(mu) & inside(ml)
    found = oku & okl & torch.isfinite(gap_px)
    valid = present & found & framed & (gap_px > -1.0)
    big = torch.tensor(float(S + 1), device=dev)
    o_lo = torch.where(valid, o, big).amin(dim=-1, keepdim=True) - 0.5  # lines cover [o-½, o+½)
    o_hi = torch.where(valid, o, -big).amax(dim=-1, keepdim=True) + 0.5
    q = 0.25 * (o_hi - o_lo)
    central = valid & (o >= o_lo + q) & (o <= o_hi - q)
    sp = float(stack.spacing_mm)
    gap_mm = gap_px * sp
    profile = torch.where(valid, gap_mm, torch.full_like(gap_mm, float("nan")))
    cnt = central.sum(dim=-1)
    # ---- flags
    npres = present.sum(dim=-1).clamp_min(1).float()
    flags = torch.zeros(B, dtype=torch.int32, device=dev)

    def setf(cond, bit):
        nonlocal flags
        flags = flags | (cond.to(torch.int32) * bit)

    setf((stack.upper.flatten(1).amax(1) <= 0) | (stack.lower.flatten(1).amax(1) <= 0), 1)
    setf(~present.any(dim=-1), 2)
    setf((present & found & (gap_px < -0.5)).sum(dim=-1) >= 0.2 * npres, 4)
    setf((present & found & ~framed).sum(dim=-1) >= 0.5 * npres, 8)
    setf((present & ~found).sum(dim=-1) >= 0.5 * npres, 16)
    setf(cnt < MIN_CENTRAL_LINES, 32)
    # consistency across the central lines: robust spread around a straight-line fit
    c = central.float()
    n = c.sum(-1).clamp_min(1)
    og = torch.where(central, gap_px, torch.zeros_like(gap_px))
    mo = (c * o).sum(-1) / n
    mg = og.sum(-1) / n
    sxx = (c * (o - mo[:, None]) ** 2).sum(-1).clamp_min(1e-6)
    slope = (c * (o - mo[:, None]) * (og - mg[:, None])).sum(-1) / sxx
    res = torch.where(central, (gap_px - mg[:, None] - slope[:, None] * (o - mo[:, None])).abs(), torch.full_like(gap_px, float("nan")))
    mad = torch.nanmedian(res, dim=-1).values
    med = torch.nanmedian(torch.where(central, gap_px, torch.full_like(gap_px, float("nan"))), dim=-1).values
    setf((cnt >= MIN_CENTRAL_LINES) & (mad > torch.clamp(0.25 * med.abs(), min=1.0)), 64)
    nan = torch.full((B,), float("nan"), device=dev)
    good = (cnt > 0) & (flags == 0)
    g0 = torch.where(central, gap_mm, torch.zeros_like(gap_mm))
    jsw = torch.where(good, g0.sum(dim=-1) / cnt.clamp_min(1), nan)
    mn = torch.where(good, torch.where(central, gap_mm, torch.full_like(gap_mm, float("inf"))).amin(dim=-1), nan)
    ex = torch.stack([torch.cat(out["eu"]), torch.cat(out["el"])], 1)
    ex = torch.where(valid.unsqueeze(1), ex, torch.full_like(ex, float("nan")))
    return JSWMeasurement(jsw_mm=jsw, min_mm=mn, profile_mm=profile, offsets_px=offsets, central=central, axis=a,
                          flags=flags, end_exponent=ex)


def measure_jsw(stack: LayerStack, axis=None, *, return_details: bool = False):
    """JSW per sample, (B,) float32 mm; NaN where the crop is unmeasurable or doubtful (no bone,
    no line crossing both bones, overlapping bones, a gap leaving the frame, margins not found,
    too few lines, lines that disagree: the module docstring's flags).

    See :func:`measure_jsw_profile` for the definition and the ``axis`` argument. With
    ``return_details=True`` returns ``(jsw, JSWMeasurement)``; ``details.flags`` and
    ``details.reasons`` say why a sample is NaN.
    """
    m = measure_jsw_profile(stack, axis)
    return (m.jsw_mm, m) if return_details else m.jsw_mm
