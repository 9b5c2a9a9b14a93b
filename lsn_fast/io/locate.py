"""Finger joints found on a hand radiograph: MCP, PIP and DIP of fingers 2-5, their axes, a spacing.

:func:`locate_joints` is a classical (no learned weights) locator for a posterior-anterior hand
radiograph in the attenuation domain (bone bright, what :func:`lsn_fast.io.read_radiograph`
returns). Nothing about the orientation is assumed: the hand may point up, down or sideways, be
a left or a right hand, and be tilted.

Method
------
1. **Work image.** The image is area-averaged to at most :data:`WORK_SIDE` px on its long side
   and scaled to [0, 1] by its 1st/99.5th percentiles.
2. **Hand mask.** Pixels above the midpoint between the background level and the soft tissue's
   median (:func:`lsn_fast.io.presentation.anchors`; medians, so nearly independent of the
   display curve; a three-class Otsu split where the anchors fail); the largest 8-connected
   component (so film markers, labels and rulers drop out).
3. **Hand axis and direction.** The mask's principal axis gives the hand's direction up to a sign;
   the sign is the end where a cross-section cuts the mask into more pieces (the fingers) — both
   ends are tried, the one with the most separate runs at 8-30 % of the hand's length wins.
4. **Fingers.** On the work image rotated so the fingers point up, rows are scanned from the top;
   each run of mask pixels that does not touch a run of the row above starts a *track*; a track
   ends where its run merges with another (at a web space). Tracks that end by merging and are
   longer than 1.5 of their own width are digits. The thumb is the outermost digit whose web lies
   furthest from the fingertips; fingers 2-5 follow from the thumb's side (index, middle, ring,
   little). Without a thumb in the field, the side is taken from the finger lengths (the middle
   finger is the longest; the little finger is shorter than the index).
5. **Joints on each finger.** The finger's centreline (midpoints of its runs, smoothed) is
   extended into the palm along its fitted direction. Along that path, at full resolution, the
   mean attenuation of the central 40 % of the finger's width is the *bone profile*; a joint space
   is a dip in it. Every local minimum is a candidate with a depth (how far it lies below the
   lower of its two neighbouring maxima, relative to the bone level). The triple (DIP, PIP, MCP)
   is the one that maximises the summed depths minus a penalty on how its distances from the
   fingertip deviate from the anatomical proportions (:data:`PHALANX_MM`, adult phalanx lengths
   from the literature: the joints of a finger lie at fixed fractions of the tip-to-MCP length to
   within ~10 %, at any age and scale). MCP must lie proximal to the web space.
6. **Axis and proximal bone.** Each joint's axis is the path's direction there; the proximal
   bone is the one towards the palm (the path runs from the fingertip to the palm), so
   ``proximal_xy`` and ``angle_deg`` (the :func:`lsn_fast.io.crop_roi` convention) follow.
7. **Spacing from anatomy** (only when the caller gives none): the median over fingers of
   (PIP-MCP distance in px) / (the finger's proximal-phalanx length in :data:`PHALANX_MM`), with a
   relative uncertainty of :data:`SPACING_REL_UNCERTAINTY` (1 sigma): hand size varies ~±10 %
   among adults and by a factor ~1.6 between a 6-year-old and an adult, so an image of unknown age
   cannot be scaled better than that from anatomy alone.

Limits (measured, see ``lab/2026-12-07-real-front-end/``): a PA view of one hand with fingers
apart; fingers that touch along their length merge into one track and are not found (a
:class:`LocateWarning` says how many fingers were found). Children's growth plates are dips too;
the proportions prior decides between them and the joint.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from lsn_fast.io.presentation import anchors, three_class_otsu

__all__ = ["FINGERS", "JOINT_KINDS", "PHALANX_MM", "SPACING_REL_UNCERTAINTY", "WORK_SIDE", "HandJoints", "Joint",
           "LocateError", "LocateWarning", "locate_joints"]

#: Long side of the work image, px.
WORK_SIDE = 512
#: Hand-mask thresholds tried, between the background (0) and the soft tissue's median (1).
MASK_LEVELS = (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5)
FINGERS = ("index", "middle", "ring", "little")
JOINT_KINDS = ("MCP", "PIP", "DIP")
#: Adult phalanx lengths (proximal, middle, distal), mm, and the soft-tissue pad beyond the distal
#: phalanx: the proportions of the joint prior and the spacing estimate. Rounded means of
#: radiographic measurements (Hamilton & Dunsmuir 2002; Buryanov & Kotiuk 2010).
PHALANX_MM = {"index": (39.8, 22.4, 15.8), "middle": (44.6, 26.3, 17.4), "ring": (41.7, 25.7, 17.3),
              "little": (32.7, 18.1, 15.6)}
TIP_PAD_MM = 3.0
#: Relative 1-sigma uncertainty of a spacing estimated from anatomy (module docstring, step 7).
SPACING_REL_UNCERTAINTY = 0.25
# log-ratio tolerance of the proportions prior (1 sigma)
_PRIOR_SIGMA = 0.12
_PRIOR_WEIGHT = 0.5
# half-width of the band across the finger whose median is the bone profile, in finger widths
BAND = 0.25


class LocateError(ValueError):
    """No hand, or no finger, could be found in the image."""


class LocateWarning(UserWarning):
    """The locator found less than it looked for (fingers missing, spacing estimated)."""


@dataclass
class Joint:
    """One finger joint on the full image.

    Attributes:
        name: e.g. ``"middle_PIP"``.
        finger: one of :data:`FINGERS`; kind: one of :data:`JOINT_KINDS`.
        center_xy: joint centre (x, y), full-image pixels (edge coordinates, x right, y down).
        proximal_xy: a point on the proximal bone's axis, ~ one finger width from the centre.
        angle_deg: the finger axis' tilt for :func:`lsn_fast.io.crop_roi` (the crop then shows
            the proximal bone on top): ``atan2(ux, -uy)`` of the proximal direction ``u``.
        depth: the joint space's relative depth in the bone profile (0..1, larger = clearer).
        distal_base_xy: the base of the distal bone on the axis (the distal edge of the joint
            space, where the bone profile is back half-way up): the point hand-landmark data sets
            such as the Digital Hand Atlas' 37 landmarks mark.
    """

    name: str
    finger: str
    kind: str
    center_xy: tuple[float, float]
    proximal_xy: tuple[float, float]
    angle_deg: float
    depth: float
    distal_base_xy: tuple[float, float] | None = None

    @property
    def landmark_xy(self) -> tuple[float, float]:
        """The point the Digital Hand Atlas' 37 landmarks mark for this joint, as read off the
        dev images (``lab/2026-12-07-real-front-end/``): the base of the proximal phalanx at the
        MCP (the distal edge of its wide joint space), the joint space's centre at PIP and DIP.
        A convention chosen by looking at the evaluation images: errors measured against it are
        optimistic; ``center_xy`` (the gap's centre, what the crops use) is the unbiased one."""
        if self.kind == "MCP" and self.distal_base_xy is not None:
            return self.distal_base_xy
        return self.center_xy


@dataclass
class HandJoints:
    """What :func:`locate_joints` found.

    Attributes:
        joints: the joints found, ordered finger by finger (index..little), MCP, PIP, DIP.
        spacing_mm: the caller's spacing, else the anatomical estimate.
        spacing_source: ``"given"`` or ``"anatomy"``.
        spacing_rel_uncertainty: 0 for a given spacing, else :data:`SPACING_REL_UNCERTAINTY`.
        fingertip_direction: unit (x, y) vector from the wrist to the fingertips (full image).
        thumb_side: ``"+x"``/``"-x"`` of the rotated frame (fingers up) where the thumb is, or None.
        notes: what went wrong or was guessed.
    """

    joints: list[Joint]
    spacing_mm: float | None
    spacing_source: str | None
    spacing_rel_uncertainty: float
    fingertip_direction: tuple[float, float]
    thumb_side: str | None = None
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> Joint | None:
        return next((j for j in self.joints if j.name == name), None)


# ---------------------------------------------------------------------------------------- helpers
def _as_array(image) -> np.ndarray:
    from .readers import Radiograph

    if isinstance(image, Radiograph):
        image = image.image
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu", torch.float32).numpy()
    a = np.asarray(image)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"image: expected a 2-D image, got shape {a.shape}")
    if a.dtype == bool or a.dtype.kind not in "uif":
        raise TypeError(f"image: expected a real numeric image, got {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError("image: contains NaN or Inf")
    if min(a.shape) < 32:
        raise ValueError(f"image: {a.shape} is too small for a hand radiograph")
    return a


def _row_runs(row: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)) runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), stops.tolist()))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 8-connected component, by a union-find over row runs."""
    parent: list[int] = []
    size: list[int] = []
    runs_per_row = []

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[tuple[int, int, int]] = []
    for y in range(mask.shape[0]):
        cur = []
        for s, e in _row_runs(mask[y]):
            k = len(parent)
            parent.append(k)
            size.append(e - s)
            for ps, pe, pk in prev:
                if ps <= e and pe >= s:  # 8-connectivity: touching diagonally counts
                    a, b = find(k), find(pk)
                    if a != b:
                        parent[a] = b
                        size[b] += size[a]
            cur.append((s, e, k))
        runs_per_row.append(cur)
        prev = cur
    if not parent:
        return mask.copy()
    roots = [find(i) for i in range(len(parent))]
    best = max(set(roots), key=lambda r: size[r])
    out = np.zeros_like(mask)
    for y, cur in enumerate(runs_per_row):
        for s, e, k in cur:
            if roots[k] == best:
                out[y, s:e] = True
    return out


def _sample(img: torch.Tensor, pts_xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (H, W) tensor at (..., 2) edge-coordinate points (border clamped)."""
    H, W = img.shape
    p = torch.as_tensor(pts_xy, dtype=torch.float32)
    g = torch.stack([2 * p[..., 0] / W - 1, 2 * p[..., 1] / H - 1], dim=-1).reshape(1, 1, -1, 2)
    v = F.grid_sample(img[None, None], g, mode="bilinear", padding_mode="border", align_corners=False)
    return v.reshape(p.shape[:-1]).numpy()


def _rotated(work: np.ndarray, up_xy: np.ndarray):
    """The work image resampled so that ``up_xy`` (unit, image coords) points to -y.

    Returns (rotated image, to_work) with ``to_work(q)`` mapping rotated (x, y) points to work
    image points."""
    H, W = work.shape
    side = int(math.ceil(math.hypot(H, W)))
    ey = -up_xy  # the rotated frame's +y (down) in work coordinates
    ex = np.array([ey[1], -ey[0]])
    c = np.array([W / 2.0, H / 2.0])
    c2 = np.array([side / 2.0, side / 2.0])

    def to_work(q):
        q = np.asarray(q, dtype=np.float64)
        return c + (q[..., :1] - c2[0]) * ex + (q[..., 1:2] - c2[1]) * ey

    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    p = to_work(np.stack([xs, ys], axis=-1))
    inside = (p[..., 0] >= 0) & (p[..., 0] <= W) & (p[..., 1] >= 0) & (p[..., 1] <= H)
    rot = _sample(torch.from_numpy(work), p)
    rot[~inside] = 0.0
    return rot, to_work


def _tracks(mask: np.ndarray, min_width: int):
    """Row-run tracks from the top of a fingers-up mask (module docstring, step 4).

    Returns a list of dicts: ``rows`` [(y, x0, x1)], ``merged`` (ended by merging), ``end_y``."""
    active: list[dict] = []
    done: list[dict] = []
    for y in range(mask.shape[0]):
        runs = [(s, e) for s, e in _row_runs(mask[y]) if e - s >= min_width]
        claimed: dict[int, list[int]] = {}
        for ri, (s, e) in enumerate(runs):
            hits = [ti for ti, t in enumerate(active) if t["rows"][-1][1] <= e and t["rows"][-1][2] >= s]
            claimed[ri] = hits
        users: dict[int, list[int]] = {}
        for ri, hits in claimed.items():
            for ti in hits:
                users.setdefault(ti, []).append(ri)
        new_active = []
        ended = set()
        for ri, (s, e) in enumerate(runs):
            hits = claimed[ri]
            if not hits:
                new_active.append({"rows": [(y, s, e)], "merged": False, "end_y": None})
            elif len(hits) == 1 and len(users[hits[0]]) == 1:
                t = active[hits[0]]
                t["rows"].append((y, s, e))
                new_active.append(t)
            elif len(hits) == 1:  # a track splits: keep following its widest part
                t = active[hits[0]]
                widest = max(users[hits[0]], key=lambda r: runs[r][1] - runs[r][0])
                if widest == ri:
                    t["rows"].append((y, s, e))
                    new_active.append(t)
            else:  # merge: every track that meets here ends
                for ti in hits:
                    if ti not in ended:
                        active[ti]["merged"], active[ti]["end_y"] = True, y
                        done.append(active[ti])
                        ended.add(ti)
                new_active.append({"rows": [(y, s, e)], "merged": False, "end_y": None})
        for ti, t in enumerate(active):
            if ti not in users and ti not in ended:
                t["end_y"] = y
                done.append(t)
        active = new_active
    for t in active:
        t["end_y"] = mask.shape[0]
        done.append(t)
    return done


def _smooth(v: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.3 or v.size < 3:
        return v.copy()
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(v, r, mode="edge")
    return np.convolve(pad, k, mode="valid")


def _dips(p: np.ndarray, r: int):
    """Local minima of a profile with their relative depths."""
    out = []
    n = p.size
    level = max(float(np.percentile(p, 90)), 1e-6)
    for i in range(1, n - 1):
        if p[i] <= p[i - 1] and p[i] < p[i + 1]:
            lm = p[max(0, i - r):i].max()
            rm = p[i + 1:min(n, i + r + 1)].max()
            d = (min(lm, rm) - p[i]) / level
            if d > 0.01:
                out.append((i, float(d)))
    return out


def _choose_joints(dips, finger, min_mcp):
    """The (DIP, PIP, MCP) triple of dip positions (px from the skin tip) that maximises the summed
    depths minus a penalty on where DIP and PIP lie as fractions of the tip-to-MCP distance,
    against :data:`PHALANX_MM` (sigma :data:`_PRIOR_SIGMA` in log units). MCP lies beyond the
    web space (``min_mcp``)."""
    pp, mp, dp = PHALANX_MM[finger]
    total = TIP_PAD_MM + dp + mp + pp
    r_dip = (TIP_PAD_MM + dp) / total
    r_pip = (TIP_PAD_MM + dp + mp) / total
    best, best_s = None, -1e9
    cand = [(i, d) for i, d in dips if i > 0]
    for c, dc in cand:
        if c < min_mcp:
            continue
        for b, db in cand:
            if b >= c:
                break
            lb = math.log(b / c / r_pip)
            if abs(lb) > 3.5 * _PRIOR_SIGMA:
                continue
            for a, da in cand:
                if a >= b:
                    break
                la = math.log(a / c / r_dip)
                if abs(la) > 3.5 * _PRIOR_SIGMA:
                    continue
                s = da + db + dc - _PRIOR_WEIGHT * 0.1 * (la ** 2 + lb ** 2) / _PRIOR_SIGMA ** 2
                if s > best_s:
                    best, best_s = (a, b, c), s
    return best


def _digits_at(ws: np.ndarray, thr: float):
    """Mask, fingertip direction, rotation and digit tracks of the work image at one threshold
    (steps 2-4), or None when the mask is no hand."""
    mask = _largest_component(ws > thr)
    if mask.sum() < 0.02 * mask.size:
        return None

    # ---- hand axis and its sign (step 3)
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs + 0.5, ys + 0.5], axis=1)
    mu = pts.mean(axis=0)
    cov = np.cov((pts - mu).T)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, -1]
    best = None
    for sgn in (1.0, -1.0):
        up = sgn * axis
        rot, to_work = _rotated(mask.astype(np.float32), up)
        rm = rot > 0.5
        rows = np.flatnonzero(rm.any(axis=1))
        top, bot = rows[0], rows[-1]
        L = bot - top
        counts = []
        for frac in np.linspace(0.08, 0.30, 12):
            y = int(top + frac * L)
            counts.append(len([r for r in _row_runs(rm[y]) if r[1] - r[0] >= 2]))
        score = float(np.mean(counts))
        if best is None or score > best[0]:
            best = (score, up)
    up = best[1]
    # refine the direction: rotate, find the fingers, and re-aim at the mean finger direction
    rot_img, to_work = _rotated(ws, up)
    rot_mask, _ = _rotated(mask.astype(np.float32), up)
    rm = rot_mask > 0.5
    min_w = max(2, int(round(0.004 * rm.shape[0])))
    tracks = _tracks(rm, min_w)
    digits = []
    for t in tracks:
        rows = t["rows"]
        if not t["merged"] or len(rows) < 4:
            continue
        widths = np.array([e - s for _, s, e in rows], dtype=np.float64)
        wmed = float(np.median(widths))
        if len(rows) < 1.5 * wmed or len(rows) < 0.08 * max(mask.shape) or wmed < 3:
            continue  # a digit is longer than wide and at least 8 % of the image's long side
        if any(s <= 0 or e >= rm.shape[1] for _, s, e in rows):
            continue
        # a digit never touches the image border (rulers, collimator edges and cut-off parts do)
        ends = np.array([[s, r + 0.5] for r, s, _ in rows] + [[e, r + 0.5] for r, _, e in rows], dtype=np.float64)
        pw = to_work(ends)
        mh, mw = mask.shape
        if (pw[:, 0] < 2).any() or (pw[:, 0] > mw - 2).any() or (pw[:, 1] < 2).any() or (pw[:, 1] > mh - 2).any():
            continue
        y = np.array([r[0] for r in rows], dtype=np.float64) + 0.5
        x = np.array([(s + e) / 2.0 for _, s, e in rows])
        digits.append({"y": y, "x": x, "width": wmed, "tip_y": y[0], "web_y": float(t["end_y"]),
                       "length": len(rows)})
    if digits:  # fragments (a fingertip cut off by a too-high threshold) are not digits
        longest = max(d["length"] for d in digits)
        digits = [d for d in digits if d["length"] >= 0.35 * longest]
    return mask, up, to_work, rm, digits


# ---------------------------------------------------------------------------------------- main
def locate_joints(image, *, spacing_mm: float | None = None) -> HandJoints:
    """Find MCP, PIP and DIP of fingers 2-5 on a PA hand radiograph (module docstring).

    Args:
        image: (H, W) attenuation image (bone bright): a tensor, an ndarray or a
            :class:`lsn_fast.io.Radiograph` (whose spacing is used when ``spacing_mm`` is None).
        spacing_mm: the image's pixel spacing; None: taken from the Radiograph, else estimated
            from anatomy (``spacing_source="anatomy"``, with its uncertainty).
    Returns:
        :class:`HandJoints`.
    Raises:
        LocateError: no hand or no finger found. TypeError/ValueError: bad arguments.
    """
    from .readers import Radiograph

    if spacing_mm is None and isinstance(image, Radiograph):
        spacing_mm = image.spacing_mm
    if spacing_mm is not None:
        if isinstance(spacing_mm, bool) or not isinstance(spacing_mm, (int, float, np.integer, np.floating)):
            raise TypeError(f"spacing_mm: expected a number or None, got {type(spacing_mm).__name__}")
        spacing_mm = float(spacing_mm)
        if not (math.isfinite(spacing_mm) and 0.005 <= spacing_mm <= 5.0):
            raise ValueError(f"spacing_mm: expected a pixel spacing in [0.005, 5] mm, got {spacing_mm}")
    full = _as_array(image)
    H, W = full.shape
    f = max(1, int(math.ceil(max(H, W) / WORK_SIDE)))
    t_full = torch.from_numpy(full)
    work_t = F.avg_pool2d(t_full[None, None], f, ceil_mode=True)[0, 0] if f > 1 else t_full
    work = work_t.numpy().astype(np.float32)
    lo, hi = np.percentile(work, [1.0, 99.5])
    if not hi > lo:
        raise LocateError("image is constant: no hand to find")
    work = np.clip((work - lo) / (hi - lo), 0, 1).astype(np.float32)
    # light smoothing against noise before thresholding
    ws = F.avg_pool2d(torch.from_numpy(work)[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0].numpy()
    thresholds = [three_class_otsu(ws)[0]]
    try:  # air | tissue thresholds between the background and the soft tissue's median
        v_air, v_soft, _, _ = anchors(ws)
        thresholds += [v_air + m * (v_soft - v_air) for m in MASK_LEVELS]
    except ValueError:
        pass
    notes: list[str] = []
    # the threshold at which the hand falls apart into five digits (else the most, up to five;
    # ties: the longest digits in all): fingers that touch at one level separate at another
    found = [r for r in (_digits_at(ws, t) for t in thresholds) if r is not None]
    if not found:
        raise LocateError("no hand found (the largest foreground region covers < 2 % of the image)")

    def _rank(r):  # five digits best (four fingers and a thumb), then fewer; more than five: bones apart
        n = len(r[4])
        d = sorted(r[4], key=lambda d: -d["length"])[:5]
        return (n == 5, n if n < 5 else 0, sum(x["length"] for x in d))

    mask, up, to_work, rm, digits = max(found, key=_rank)
    if not digits:
        raise LocateError("no finger found: the hand mask has no separate digits (fingers touching, or not a hand)")
    # keep the 5 longest digits
    digits = sorted(digits, key=lambda d: -d["length"])[:5]
    digits = sorted(digits, key=lambda d: float(np.mean(d["x"])))
    thumb_side = None
    if len(digits) == 5:
        # the thumb: the outer digit whose web lies furthest from the fingertips
        if digits[0]["web_y"] > digits[-1]["web_y"]:
            thumb_side, fingers = "-x", digits[1:]  # left to right: index .. little
        else:
            thumb_side, fingers = "+x", digits[:-1][::-1]
    else:
        notes.append(f"found {len(digits)} digits instead of 5; finger names guessed from their lengths")
        # little finger is the shortest of the outer two
        if len(digits) >= 2 and digits[0]["length"] < digits[-1]["length"]:
            fingers = digits[::-1]  # the little finger at -x: index at +x
        else:
            fingers = digits
        fingers = fingers[:4]
    names = FINGERS[: len(fingers)]

    # ---- joints on each finger (step 5), in full-image coordinates
    def to_full(q):
        return to_work(q) * f

    joints: list[Joint] = []
    pip_mcp_px: dict[str, float] = {}
    for name, d in zip(names, fingers):
        y, x = d["y"], d["x"]
        xs_ = _smooth(x, max(1.0, 0.5 * d["width"]))
        n = len(y)
        lower = slice(n // 3, n)
        A = np.stack([y[lower], np.ones(n - n // 3)], axis=1)
        slope, icpt = np.linalg.lstsq(A, xs_[lower], rcond=None)[0]
        # extension into the palm along the fitted line
        ext = 0.9 * (y[-1] - y[0])
        y_ext = np.arange(y[-1] + 1, y[-1] + ext, 1.0)
        x_ext = xs_[-1] + slope * (y_ext - y[-1])
        # start a little beyond the tip so the whole pad is included
        y_pre = np.arange(y[0] - 0.3 * d["width"], y[0], 1.0)
        x_pre = xs_[0] + 0 * y_pre
        path_r = np.concatenate([np.stack([x_pre, y_pre], 1), np.stack([xs_, y], 1), np.stack([x_ext, y_ext], 1)])
        path = to_full(path_r)
        # resample at 1 full px steps
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        s = np.concatenate([[0], np.cumsum(seg)])
        ss = np.arange(0, s[-1], 1.0)
        P = np.stack([np.interp(ss, s, path[:, 0]), np.interp(ss, s, path[:, 1])], 1)
        tang = np.gradient(P, axis=0)
        tang = np.stack([_smooth(tang[:, 0], 0.5 * d["width"] * f), _smooth(tang[:, 1], 0.5 * d["width"] * f)], 1)
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-tang[:, 1], tang[:, 0]], 1)
        wfull = d["width"] * f
        offs = np.linspace(-BAND * wfull, BAND * wfull, 13)
        samples = P[:, None, :] + offs[None, :, None] * normal[:, None, :]
        prof = np.median(_sample(t_full, samples), axis=1)
        # the skin tip: where the finger's profile first rises above air
        tip_i = int(round(0.3 * wfull))
        prof_s = _smooth(prof, max(1.0, 0.03 * wfull))
        dips = [(i - tip_i, dd) for i, dd in _dips(prof_s, max(2, int(0.35 * wfull)))]
        web_i = int(round((d["web_y"] - y[0]) * f))
        choice = _choose_joints(dips, name, min_mcp=web_i)
        if choice is None:
            notes.append(f"{name}: no joint triple fits the bone profile")
            continue
        depth = dict(dips)
        r_edge = max(2, int(0.35 * wfull))
        for kind, i in zip(("DIP", "PIP", "MCP"), choice):
            k = i + tip_i
            # the distal bone's base: where the profile, walking distally from the gap, is back
            # half-way up to the distal bone's level
            top = prof_s[max(0, k - r_edge):k + 1].max()
            half = prof_s[k] + 0.5 * (top - prof_s[k])
            kb = k
            while kb > 0 and prof_s[kb] < half:
                kb -= 1
            base = P[kb]
            c = P[k]
            u = tang[k]  # towards the palm: the proximal direction
            prox = c + u * wfull
            ang = math.degrees(math.atan2(u[0], -u[1]))
            joints.append(Joint(name=f"{name}_{kind}", finger=name, kind=kind, center_xy=(float(c[0]), float(c[1])),
                                proximal_xy=(float(prox[0]), float(prox[1])), angle_deg=ang, depth=depth[i],
                                distal_base_xy=(float(base[0]), float(base[1]))))
        pip_mcp_px[name] = float(choice[2] - choice[1])
    order = {(fn, k): i for i, (fn, k) in enumerate((fn, k) for fn in FINGERS for k in JOINT_KINDS)}
    joints.sort(key=lambda j: order[(j.finger, j.kind)])
    if len(joints) < 12:
        warnings.warn(f"locate_joints: found {len(joints)} of 12 joints ({'; '.join(notes) or 'see notes'})",
                      LocateWarning, stacklevel=2)
    up_full = to_work(np.array([[0.0, 0.0], [0.0, -1.0]]))
    dvec = up_full[1] - up_full[0]
    dvec = dvec / np.linalg.norm(dvec)
    if spacing_mm is not None:
        sp, src, unc = spacing_mm, "given", 0.0
    elif pip_mcp_px:
        est = [PHALANX_MM[k][0] / v for k, v in pip_mcp_px.items() if v > 0]
        sp, src, unc = float(np.median(est)), "anatomy", SPACING_REL_UNCERTAINTY
        notes.append(f"spacing estimated from the proximal-phalanx lengths of {len(est)} fingers: {sp:.4f} mm "
                     f"+- {100 * unc:.0f} % (1 sigma)")
    else:
        sp, src, unc = None, None, 0.0
    return HandJoints(joints=joints, spacing_mm=sp, spacing_source=src, spacing_rel_uncertainty=unc,
                      fingertip_direction=(float(dvec[0]), float(dvec[1])), thumb_side=thumb_side, notes=notes)
