"""An independent finger-joint renderer: analytic ray casting through rounded 3-D bone ends.

Written for checking :func:`lsn_fast.measure_jsw` and :func:`lsn_fast.quantify_jsn` on anatomy
that :mod:`lsn_fast.physics.phantom` did not make. It shares no code and no shape model with
that module (different bone shapes, texture, soft tissue, sampling and detector); only the
container (:class:`~lsn_fast.physics.layers.LayerStack`) and the axis convention are common.

Geometry (canonical frame, mm: x lateral, y along the finger pointing distally, z the beam;
the image is a parallel projection along z; proximal bone at negative y):

* **Upper (proximal) bone.** Its end is a union of convex, z-symmetric solids: one or two
  condyles (``end="sphere"``: spheres of radius ``R``; ``"ellipsoid"``: ellipsoids with
  semi-axes ``(Rx, Ry, Rz)``) centred at ``(x_i, y_c, 0)``, joined to a shaft, an elliptic
  cylinder ``(x/a)² + (z/b)² <= 1`` for ``y <= y_c`` whose width narrows towards the shaft.
  ``end="flat"`` is an extruded block ending at the plane ``y = y_c`` (a step edge). Because
  every solid is centred at ``z = 0``, the chord of the union along a ray is the largest chord
  (``2·max_i zhalf_i``), an exact line integral, no voxels.
* **Lower (distal) bone.** An elliptic cylinder for ``y >= y_c + g`` *minus* the condyles grown
  by the gap ``g`` (radius ``R + g``; ellipsoid semi-axes ``+ g``): a concave base that mirrors
  the condyles. For spheres every point of the base is at least ``g`` from every point of the
  head (concentric spheres), so ``g`` is the exact 3-D gap; the chord is ``2·max(0, zc − max_i zs_i)``.
  ``end="flat"``: the base is the plane ``y = y_c + g``.
* **Erosion** (``erosion=True``): a ball of radius ``r_e`` centred on the tip of one condyle is
  removed from the head (its z-interval subtracted from the chord), so that column's end
  retreats and becomes irregular.
* **Cortex.** Each bone is a cortical shell of thickness ``t_c`` (the same solids shrunk by
  ``t_c``) around trabecular bone; the bone layers hold the *excess* attenuation over soft
  tissue: ``0.1 · (Δμ_cort · (chord_out − chord_in) + Δμ_trab · chord_in · texture)`` (μ in 1/cm,
  chords in mm).
* **Texture.** A sum of random plane waves (24 directions, 0.8–3 cycles/mm, random phases),
  evaluated at the sub-sample positions in the bone's own frame: a smooth, anisotropic pattern,
  not filtered noise.
* **Soft tissue.** A superellipse cross-section ``|x/A|^n + |z/B|^n <= 1`` (n in 2.2–3.2), A and
  B swelling at the joint; ``soft = 0.1 · μ_soft · chord``.

Pixels integrate over their area by a regular ``ss × ss`` grid of sub-samples (default 12).

Ground truth ("the exact radiographic gap"): for each line parallel to the axis (canonical
column ``x``), the distance from the lowest point of the upper bone's projection to the highest
point of the lower bone's projection, found by dense sampling and bisection on the exact chord
functions (to 1e-5 mm). ``jsw_mm`` is its mean over the central half of the columns where both
bones are present (the definition of :func:`lsn_fast.measure_jsw`), on a 0.01 mm grid.

Detector (:func:`expose`): expected counts ``N0·exp(−A)``, an exponential point-spread function
``exp(−r/λ)`` (a scintillator's; applied to the counts in Fourier space), Poisson quantum noise
(``torch.poisson``), additive electronic noise, and the log transform ``y = −log(max(q,1)/N0)``.

Attenuation: soft tissue 0.20–0.23 /cm, cortical bone excess 0.55–0.75 /cm, trabecular excess
0.08–0.20 /cm (≈ 50 keV; NIST XCOM with ICRU-44 compositions, cf. DESIGN.md §2).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .axis import axis_from_angle
from .layers import LayerStack

__all__ = ["render_joints", "render_pairs", "expose", "chord_sphere", "END_SHAPES"]

END_SHAPES = ("sphere", "ellipsoid", "flat")


# ----------------------------------------------------------------------------- analytic chords
def chord_sphere(x, y, cx, cy, r):
    """Length (mm) of the chord along z through a sphere of radius r centred at (cx, cy, 0)."""
    return 2.0 * torch.sqrt(torch.clamp(r * r - (x - cx) ** 2 - (y - cy) ** 2, min=0.0))


def _half_ellipsoid(x, y, cx, cy, rx, ry, rz):
    q = 1.0 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2
    return rz * torch.sqrt(torch.clamp(q, min=0.0))


def _half_cyl(x, cx, a, b):
    return b * torch.sqrt(torch.clamp(1.0 - ((x - cx) / a) ** 2, min=0.0))


def _smooth01(t):
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _Joint:
    """One joint's parameters (python floats, mm and 1/cm) and exact chord functions."""

    def __init__(self, rng: np.random.Generator, gap, end: str, erosion: bool, condyles: int, scale: float):
        u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
        s = scale
        self.end, self.erosion = end, erosion
        self.g = u(0.3, 2.5) if gap is None else float(gap)
        self.R = u(2.4, 3.6) * s
        self.sep = (u(0.35, 0.7) * self.R) if condyles == 2 else 0.0
        self.cx = [-self.sep, self.sep] if condyles == 2 else [0.0]
        self.cx = [c + u(-0.05, 0.05) * s for c in self.cx]
        self.ry_f = u(0.75, 1.25) if end == "ellipsoid" else 1.0  # ellipsoid semi-axes relative to R
        self.rz_f = u(0.8, 1.15) if end == "ellipsoid" else 1.0
        self.rx_f = u(0.85, 1.2) if end == "ellipsoid" else 1.0
        self.yc = -0.5 * self.g - self.R * self.ry_f  # condyle tips near y = -g/2
        self.a_u = self.sep + self.R * self.rx_f * u(0.8, 0.95)
        self.b_u = self.R * self.rz_f * u(0.4, 0.7)  # the bone is flattened: condyles cut by |z| <= b_u
        self.shaft_narrow = u(0.1, 0.3)
        self.flare_len = u(3.0, 6.0) * s
        self.a_l = self.a_u * u(0.92, 1.08)
        self.b_l = self.b_u * u(0.9, 1.05)
        if end != "flat":  # a shallow base: its rims (|z| = b_l) must not project over the head
            rz = self.R * self.rz_f + self.g
            self.b_l = min(self.b_l, rz * math.sqrt(max(0.0, 1.0 - ((self.R * self.rz_f + 0.4 * self.g) / rz) ** 2)))
        self.x_l = u(-0.25, 0.25) * s
        self.tc = u(0.15, 0.35)
        self.dmu_c = u(0.55, 0.75)
        self.dmu_t = u(0.08, 0.20)
        self.dmu_c_l = self.dmu_c * u(0.95, 1.05)
        self.dmu_t_l = self.dmu_t * u(0.9, 1.1)
        self.mu_soft = u(0.20, 0.23)
        self.soft_n = u(2.2, 3.2)
        self.soft_A = max(self.a_u, self.a_l + abs(self.x_l)) + u(1.5, 3.0) * s
        self.soft_B = max(self.b_u, self.b_l) + u(1.2, 2.5) * s
        self.soft_swell = u(0.0, 0.15)
        self.soft_x = u(-0.4, 0.4) * s
        # erosion: a ball removed at the tip of one condyle
        ci = int(rng.integers(len(self.cx)))
        self.er_x = self.cx[ci] + u(-0.3, 0.3) * self.R
        self.er_r = u(0.35, 0.8) * s
        self.er_depth = u(0.1, 0.5) * self.er_r
        # texture: plane waves
        k = 24
        ang = rng.uniform(0, math.pi, k)
        f = rng.uniform(0.8, 3.0, k)
        self.tex_k = np.stack([f * np.cos(ang), f * np.sin(ang)], 1)
        self.tex_ph = rng.uniform(0, 2 * math.pi, k)
        self.tex_c = u(0.15, 0.4)
        self.lower_dy = 0.0  # rigid move of the lower bone along +y (mm); see render_pairs

    # -- upper bone: half chord (z extent) of the outer (t=0) or inner (t=tc) solid
    def _upper_half(self, x, y, t):
        if self.end == "flat":
            a = self.a_u - t
            inside = y <= self.yc + self.R * self.ry_f - t  # end plane at the condyle tips
            h = _half_cyl(x, 0.0, a, self.b_u - t) * inside
        else:
            taper = 1.0 - self.shaft_narrow * _smooth01((self.yc - y) / self.flare_len)
            h = _half_cyl(x, 0.0, (self.a_u - t) * taper, (self.b_u - t) * (0.5 + 0.5 * taper)) * (y <= self.yc)
            for c in self.cx:
                h = torch.maximum(h, torch.clamp(_half_ellipsoid(x, y, c, self.yc, self.R * self.rx_f - t, self.R * self.ry_f - t,
                                                                 self.R * self.rz_f - t), max=self.b_u - t))
        return h

    def _erode(self, x, y, h):
        """Subtract the erosion ball's z-interval [-e, e] from the symmetric interval [-h, h]."""
        if not self.erosion or self.end == "flat":
            return 2.0 * h
        ty = self.yc + self.R * self.ry_f + self.er_r - self.er_depth  # ball centre below the tip
        e = 0.5 * chord_sphere(x, y, self.er_x, ty, self.er_r)
        return 2.0 * h - 2.0 * torch.minimum(e, h)

    def upper_chords(self, x, y):
        out = self._erode(x, y, self._upper_half(x, y, 0.0))
        inn = self._erode(x, y, self._upper_half(x, y, self.tc))
        return out, torch.minimum(inn, out)

    def _lower_full(self, x, y, t):
        y = y - self.lower_dy
        zc = _half_cyl(x, self.x_l, self.a_l - t, self.b_l - t)
        if self.end == "flat":
            top = self.yc + self.R * self.ry_f + self.g + t
            return 2.0 * zc * (y >= top)
        zs = torch.zeros_like(x)
        for c in self.cx:
            zs = torch.maximum(zs, _half_ellipsoid(x, y, c, self.yc, self.R * self.rx_f + self.g + t,
                                                   self.R * self.ry_f + self.g + t, self.R * self.rz_f + self.g + t))
        return 2.0 * torch.clamp(zc - zs, min=0.0) * (y >= self.yc + self.g + t)

    def lower_chords(self, x, y):
        out = self._lower_full(x, y, 0.0)
        return out, torch.minimum(self._lower_full(x, y, self.tc), out)

    def soft_chord(self, x, y):
        sw = 1.0 + self.soft_swell * torch.exp(-((y / 4.0) ** 2))
        A, B, n = self.soft_A * sw, self.soft_B * sw, self.soft_n
        q = torch.clamp(1.0 - torch.abs((x - self.soft_x) / A) ** n, min=0.0)
        return 2.0 * B * q ** (1.0 / n)

    def texture(self, x, y):
        k = torch.as_tensor(self.tex_k, dtype=x.dtype)
        ph = torch.as_tensor(self.tex_ph, dtype=x.dtype)
        arg = 2 * math.pi * (x.unsqueeze(-1) * k[:, 0] + y.unsqueeze(-1) * k[:, 1]) + ph
        t = torch.cos(arg).sum(-1) * math.sqrt(2.0 / k.shape[0])
        return torch.clamp(1.0 + self.tex_c * t, min=0.2)

    # -- exact silhouettes
    def x_extent(self):
        lo_u, hi_u = -self.a_u, self.a_u
        if self.end != "flat":
            lo_u = min(lo_u, min(self.cx) - self.R * self.rx_f)
            hi_u = max(hi_u, max(self.cx) + self.R * self.rx_f)
        return max(lo_u, self.x_l - self.a_l), min(hi_u, self.x_l + self.a_l)

    def silhouettes(self, xs: torch.Tensor):
        """(bottom of the upper bone, top of the lower bone) per column x (float64, mm); NaN where absent."""
        n = 1201
        y_lo = self.yc - 1.0
        y_hi = self.yc + self.R * self.ry_f + self.g + self.R * 2 + 1.0 + abs(self.lower_dy)
        ys = torch.linspace(y_lo, y_hi, n, dtype=torch.float64)
        X, Y = xs.view(-1, 1).expand(-1, n), ys.view(1, -1).expand(xs.numel(), -1)
        up = self.upper_chords(X, Y)[0] > 0
        lo = self.lower_chords(X, Y)[0] > 0
        idx = torch.arange(n).view(1, -1)
        iu = torch.where(up, idx, torch.full_like(idx, -1)).amax(1)
        il = torch.where(lo, idx, torch.full_like(idx, n)).amin(1)
        step = float(ys[1] - ys[0])

        def bisect(fn, a, b, inside_at_a):  # boundary between a and b
            for _ in range(30):
                m = 0.5 * (a + b)
                ins = fn(xs, m) > 0
                a, b = torch.where(ins == inside_at_a, m, a), torch.where(ins == inside_at_a, b, m)
            return 0.5 * (a + b)

        yb = bisect(lambda x, y: self.upper_chords(x, y)[0], ys[iu.clamp(0, n - 1)], ys[iu.clamp(0, n - 1)] + step, True)
        yt = bisect(lambda x, y: self.lower_chords(x, y)[0], ys[il.clamp(0, n - 1)] - step, ys[il.clamp(0, n - 1)], False)
        yb = torch.where((iu >= 0) & (iu < n - 1), yb, torch.full_like(yb, float("nan")))
        yt = torch.where((il > 0) & (il < n), yt, torch.full_like(yt, float("nan")))
        return yb, yt

    def truth(self, grid_mm: float = 0.01):
        lo, hi = self.x_extent()
        xs = torch.arange(lo + 0.5 * grid_mm, hi, grid_mm, dtype=torch.float64)
        yb, yt = self.silhouettes(xs)
        ok = torch.isfinite(yb) & torch.isfinite(yt)
        gap = yt - yb
        xv = xs[ok]
        q = 0.25 * (float(xv.max()) - float(xv.min()))
        cen = ok & (xs >= float(xv.min()) + q) & (xs <= float(xv.max()) - q)
        return float(gap[cen].mean()), float(gap[cen].min()), xs, gap


# ----------------------------------------------------------------------------- rendering
def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index), int(stream), 0x7A11]))


def _render_one(J: _Joint, H: int, W: int, sp: float, tilt: float, jy: float, jx: float, ss: int, shift_mm=(0.0, 0.0)):
    th = math.radians(tilt)
    c, s = math.cos(th), math.sin(th)
    sub = (torch.arange(ss, dtype=torch.float64) + 0.5) / ss
    soft = torch.empty(H, W, dtype=torch.float64)
    upper = torch.empty_like(soft)
    lower = torch.empty_like(soft)
    rows = max(1, (1 << 21) // (W * ss * ss))
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        iy = torch.arange(r0, r1, dtype=torch.float64)
        Yi = ((iy.view(-1, 1, 1, 1) + sub.view(1, 1, ss, 1)) - 0.5 * H) * sp - jy - shift_mm[0]
        Xi = ((torch.arange(W, dtype=torch.float64).view(1, -1, 1, 1) + sub.view(1, 1, 1, ss)) - 0.5 * W) * sp - jx - shift_mm[1]
        Y = c * Yi - s * Xi  # canonical y (distal positive)
        X = s * Yi + c * Xi
        uo, ui = J.upper_chords(X, Y)
        lo_, li = J.lower_chords(X, Y)
        Xc, Yc = X.mean((2, 3), keepdim=True), Y.mean((2, 3), keepdim=True)  # smooth texture: at pixel centres
        tu = J.texture(Xc, Yc)
        tl = J.texture(Xc - J.x_l + 7.3, Yc - J.lower_dy + 3.1)  # the distal bone's own pattern, moving with it
        up = 0.1 * (J.dmu_c * (uo - ui) + J.dmu_t * ui * tu)
        lw = 0.1 * (J.dmu_c_l * (lo_ - li) + J.dmu_t_l * li * tl)
        sf = 0.1 * J.mu_soft * J.soft_chord(X, Y)
        soft[r0:r1], upper[r0:r1], lower[r0:r1] = sf.mean((2, 3)), up.mean((2, 3)), lw.mean((2, 3))
    return soft, upper, lower


def _check(n, size, spacing_mm, end, tilt_deg, ss):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    if isinstance(size, int) and not isinstance(size, bool):
        H = W = size
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        H, W = int(size[0]), int(size[1])
    else:
        raise TypeError(f"size: expected an int or (H, W), got {size!r}")
    if min(H, W) < 32:
        raise ValueError(f"size: each side must be >= 32 px, got {(H, W)}")
    if not (isinstance(spacing_mm, (int, float)) and 0.02 <= float(spacing_mm) <= 0.5):
        raise ValueError(f"spacing_mm: expected a number in [0.02, 0.5] mm, got {spacing_mm!r}")
    ends = [end] * n if isinstance(end, str) else list(end)
    if len(ends) != n or any(e not in END_SHAPES for e in ends):
        raise ValueError(f"end: expected one of {END_SHAPES} or a list of {n} of them, got {end!r}")
    if isinstance(tilt_deg, (int, float)):
        tl = (float(tilt_deg), float(tilt_deg))
    else:
        tl = (float(tilt_deg[0]), float(tilt_deg[1]))
    if not (-30 <= tl[0] <= tl[1] <= 30):
        raise ValueError(f"tilt_deg: expected lo <= hi within [-30, 30], got {tilt_deg!r}")
    if not (isinstance(ss, int) and 1 <= ss <= 32):
        raise ValueError(f"ss: expected an int in [1, 32], got {ss!r}")
    return H, W, float(spacing_mm), ends, tl


def _joints(n, seed, gap_mm, ends, erosion, condyles, scale):
    if gap_mm is None:
        gaps = [None] * n
    else:
        g = torch.as_tensor(gap_mm, dtype=torch.float64).reshape(-1)
        gaps = (g.expand(n) if g.numel() == 1 else g).tolist()
        if len(gaps) != n or any(not math.isfinite(v) or v <= 0 for v in gaps):
            raise ValueError(f"gap_mm: expected one or {n} finite values > 0")
    out = []
    for i in range(n):
        rng = _rng(seed, i, 0)
        cond = condyles if condyles in (1, 2) else int(rng.integers(1, 3))
        out.append((_Joint(rng, gaps[i], ends[i], bool(erosion), cond, scale), rng))
    return out


def render_joints(n: int, size=256, spacing_mm: float = 0.1, seed: int = 0, gap_mm=None, *, end="sphere",
                  erosion: bool = False, condyles: int = 0, tilt_deg=(-10.0, 10.0), ss: int = 12):
    """Render ``n`` joints' ground-truth layers with the exact radiographic gap.

    Args:
        n: number of joints. size: int or (H, W) px (>= 32). spacing_mm: pixel spacing in [0.02, 0.5].
        seed: sample i depends only on (seed, i) (numpy SeedSequence).
        gap_mm: the 3-D gap ``g`` between head and base (> 0); None draws U(0.3, 2.5) mm.
        end: ``"sphere"``, ``"ellipsoid"`` or ``"flat"``, or a list of n of them.
        erosion: remove a ball at one condyle's tip. condyles: 1, 2, or 0 (drawn).
        tilt_deg: tilt range (lo, hi) or a number, degrees, positive turns the proximal end to +x.
        ss: sub-samples per pixel side (pixel area integration).
    Returns:
        ``(LayerStack (float32, axis = true axis), info)``; info: ``jsw_mm`` (n,) float64 the exact
        radiographic JSW (mean over the central half of the columns), ``min_mm``, ``gap_mm`` (g),
        ``tilt_deg``, ``end``, ``profiles`` (list of (x_mm, gap_mm) float64 per joint), ``joints``
        (the parameter objects, for :func:`render_pairs`).
    """
    H, W, sp, ends, tl = _check(n, size, spacing_mm, end, tilt_deg, ss)
    scale = min(1.0, min(H, W) * sp / 25.6)
    js = _joints(n, seed, gap_mm, ends, erosion, condyles, scale)
    S, U, L, info = [], [], [], {"jsw_mm": [], "min_mm": [], "gap_mm": [], "tilt_deg": [], "end": ends, "profiles": [],
                                  "joints": [], "pose": []}
    for J, rng in js:
        tilt = float(rng.uniform(*tl))
        jy, jx = (float(v) for v in rng.uniform(-0.05, 0.05, 2) * min(H, W) * sp)
        s_, u_, l_ = _render_one(J, H, W, sp, tilt, jy, jx, ss)
        S.append(s_), U.append(u_), L.append(l_)
        jsw, mn, xs, gap = J.truth()
        info["jsw_mm"].append(jsw), info["min_mm"].append(mn), info["gap_mm"].append(J.g)
        info["tilt_deg"].append(tilt), info["profiles"].append((xs, gap)), info["joints"].append(J)
        info["pose"].append((tilt, jy, jx))
    for k in ("jsw_mm", "min_mm", "gap_mm", "tilt_deg"):
        info[k] = torch.tensor(info[k], dtype=torch.float64)
    info["spacing_mm"] = sp
    axis = axis_from_angle(info["tilt_deg"].float())
    stack = LayerStack(torch.stack(S).float(), torch.stack(U).float(), torch.stack(L).float(), sp, axis=axis)
    return stack, info


def render_pairs(n: int, size=256, spacing_mm: float = 0.1, seed: int = 0, *, narrowing_mm=None, end="sphere",
                 erosion: bool = False, condyles: int = 0, tilt_deg=(-10.0, 10.0), ss: int = 8, reposition_mm: float = 0.3):
    """Two visits of the same joints: the distal bone moved rigidly towards the proximal one by
    ``narrowing_mm`` (the true JSN; drawn U(0.05, 0.8·g) when None) and the whole finger
    repositioned by up to ``reposition_mm`` in the image plane. Returns ``(baseline LayerStack,
    followup LayerStack, info)`` with ``info["jsn_mm"]`` (n,) float64 and the baseline's info."""
    H, W, sp, ends, tl = _check(n, size, spacing_mm, end, tilt_deg, ss)
    scale = min(1.0, min(H, W) * sp / 25.6)
    js = _joints(n, seed, None, ends, erosion, condyles, scale)
    if narrowing_mm is not None:
        nar = torch.as_tensor(narrowing_mm, dtype=torch.float64).reshape(-1).expand(n).tolist()
    out = {"base": ([], [], []), "follow": ([], [], [])}
    jsn, tilts, jsw0 = [], [], []
    for i, (J, rng) in enumerate(js):
        tilt = float(rng.uniform(*tl))
        jy, jx = (float(v) for v in rng.uniform(-0.05, 0.05, 2) * min(H, W) * sp)
        d = float(rng.uniform(0.05, 0.8 * J.g)) if narrowing_mm is None else float(nar[i])
        if not (0 <= d < J.g):
            raise ValueError(f"narrowing_mm: {d} must lie in [0, g = {J.g:.3f}) (bones may not interpenetrate)")
        rep = rng.uniform(-reposition_mm, reposition_mm, 2)
        for key, dy, shift in (("base", 0.0, (0.0, 0.0)), ("follow", -d, (float(rep[0]), float(rep[1])))):
            J.lower_dy = dy
            s_, u_, l_ = _render_one(J, H, W, sp, tilt, jy, jx, ss, shift)
            for lst, t in zip(out[key], (s_, u_, l_)):
                lst.append(t)
        J.lower_dy = 0.0
        jsn.append(d), tilts.append(tilt), jsw0.append(J.truth()[0])
    axis = axis_from_angle(torch.tensor(tilts, dtype=torch.float32))
    mk = lambda k: LayerStack(*(torch.stack(t).float() for t in out[k]), sp, axis=axis)  # noqa: E731
    return mk("base"), mk("follow"), {"jsn_mm": torch.tensor(jsn, dtype=torch.float64),
                                      "jsw_mm": torch.tensor(jsw0, dtype=torch.float64), "tilt_deg": torch.tensor(tilts),
                                      "end": ends, "spacing_mm": sp}


# ----------------------------------------------------------------------------- detector
def expose(stack: LayerStack, *, n0: float = 3e4, psf_px: float = 0.5, electronic: float = 3.0, seed: int = 0):
    """Radiograph of the layers through this module's own detector model, (B,1,H,W) attenuation.

    counts ``q = N0·exp(−A)``; blurred by the exponential PSF ``exp(−r/λ)`` (λ = ``psf_px``; its
    2-D transfer function ``(1 + (2πλf)²)^(−3/2)``); Poisson noise; electronic noise of σ =
    ``electronic`` counts; ``y = −log(max(q, 1)/N0)``. ``psf_px = 0`` skips the blur."""
    A = stack.attenuation().double()
    B, H, W = A.shape
    q = n0 * torch.exp(-A)
    if psf_px > 0:
        fy = torch.fft.fftfreq(H, dtype=torch.float64).view(H, 1)
        fx = torch.fft.rfftfreq(W, dtype=torch.float64).view(1, -1)
        otf = (1.0 + (2 * math.pi * psf_px) ** 2 * (fy ** 2 + fx ** 2)) ** -1.5
        pad = torch.nn.functional.pad(q.unsqueeze(1), (8, 8, 8, 8), mode="replicate")[:, 0]
        Hp, Wp = pad.shape[-2:]
        fy = torch.fft.fftfreq(Hp, dtype=torch.float64).view(Hp, 1)
        fx = torch.fft.rfftfreq(Wp, dtype=torch.float64).view(1, -1)
        otf = (1.0 + (2 * math.pi * psf_px) ** 2 * (fy ** 2 + fx ** 2)) ** -1.5
        q = torch.fft.irfft2(torch.fft.rfft2(pad) * otf, s=(Hp, Wp))[:, 8:-8, 8:-8]
    g = torch.Generator().manual_seed(int(seed) + 0x51D)
    q = torch.poisson(q.clamp_min(0), generator=g)
    q = q + electronic * torch.randn(q.shape, generator=g, dtype=q.dtype)
    return (-torch.log(q.clamp_min(1.0) / n0)).float().unsqueeze(1)
