"""The finger-joint locator on a synthetic hand (fingers, phalanges with joint gaps, palm, thumb),
in any orientation; the real-data measurement lives in lab/2026-12-07-real-front-end/."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lsn_fast.io.locate import FINGERS, PHALANX_MM, TIP_PAD_MM, LocateError, locate_joints

SP = 0.5  # mm per px of the synthetic hand


def _capsule(shape, a, b, r):
    H, W = shape
    y, x = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
    return np.hypot(x - a[0] - t * d[0], y - a[1] - t * d[1]) < r


def synthetic_hand(shape=(440, 400), left_thumb=False):
    """A fingers-up PA hand in mm-proportions at SP mm/px; returns (image, {name: (center, proximal_dir)})."""
    H, W = shape
    soft = np.zeros(shape, bool)
    bone = np.zeros(shape, bool)
    truth = {}
    mcp_y = 0.55 * H
    xs = {"index": 0.64, "middle": 0.5, "ring": 0.36, "little": 0.22}
    tilt = {"index": 7.0, "middle": 0.0, "ring": -6.0, "little": -13.0}
    for f in FINGERS:
        pp, mp, dp = PHALANX_MM[f]
        x0 = xs[f] * W if not left_thumb else (1 - xs[f]) * W
        a = math.radians(tilt[f] if not left_thumb else -tilt[f])
        u = np.array([math.sin(a), -math.cos(a)])  # towards the fingertip
        mcp = np.array([x0, mcp_y + (6 if f in ("index", "little") else 0) / SP])
        pip = mcp + u * pp / SP
        dip = pip + u * mp / SP
        tip = dip + u * dp / SP
        soft |= _capsule(shape, mcp, tip + u * (TIP_PAD_MM - 8.0) / SP, 8.0 / SP)
        g = 0.9 / SP + 4.5 / SP  # half joint gap plus the capsule's rounded end
        for p, q in ((mcp - u * 60 / SP, mcp - u * g), (mcp + u * g, pip - u * g), (pip + u * g, dip - u * g),
                     (dip + u * g, tip - u * 4.5 / SP)):
            bone |= _capsule(shape, p, q, 4.5 / SP)
        for k, c in (("MCP", mcp), ("PIP", pip), ("DIP", dip)):
            truth[f"{f}_{k}"] = (c, -u)
    # palm and wrist
    px0, px1 = (0.08 * W, 0.72 * W) if not left_thumb else (0.28 * W, 0.92 * W)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    soft |= (xx > px0) & (xx < px1) & (yy > mcp_y - 14 / SP) & (yy < H - 1)
    # thumb, from the wrist side outwards
    s = 1 if not left_thumb else -1
    base = np.array([px1 if s > 0 else px0, 0.82 * H])
    tipt = base + np.array([s * 30, -45]) / SP
    soft |= _capsule(shape, base, tipt, 9.0 / SP)
    bone |= _capsule(shape, base, tipt - (tipt - base) * 0.05, 4.5 / SP)
    img = np.full(shape, 30.0)
    img[soft] = 90.0
    img[soft & bone] = 200.0
    t = torch.from_numpy(img)[None, None].float()
    img = torch.nn.functional.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)[0, 0].numpy()
    return img, truth


def _rot(img, truth, k):
    """Rotate the image by k quarter turns (np.rot90, counter-clockwise) with the truth."""
    H, W = img.shape
    out = np.rot90(img, k).copy()
    tr = {}
    for n, (c, d) in truth.items():
        p, v = np.array(c, float), np.array(d, float)
        w = W
        for _ in range(k % 4):  # (x, y) -> (y, w - x) for one CCW quarter turn of an image w wide
            p = np.array([p[1], w - p[0]])
            v = np.array([v[1], -v[0]])
            w = H if w == W else W
        tr[n] = (p, v)
    return out, tr


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("left_thumb", [False, True])
def test_locator_finds_all_joints_in_any_orientation(k, left_thumb):
    img, truth = _rot(*synthetic_hand(left_thumb=left_thumb), k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all 12 joints: no LocateWarning
        hand = locate_joints(img, spacing_mm=SP)
    assert len(hand.joints) == 12
    for j in hand.joints:
        c, d = truth[j.name]
        err_mm = float(np.hypot(*(np.array(j.center_xy) - c))) * SP
        assert err_mm < 1.5, (j.name, err_mm)
        u = np.array(j.proximal_xy) - np.array(j.center_xy)
        assert float(u @ d) / np.linalg.norm(u) > 0.95, j.name  # proximal bone identified
        # crop_roi's angle convention: the proximal direction is (sin a, -cos a)
        a = math.radians(j.angle_deg)
        assert float(np.array([math.sin(a), -math.cos(a)]) @ d) > 0.95


def test_locator_estimates_spacing_when_none_given():
    img, _ = synthetic_hand()
    hand = locate_joints(torch.from_numpy(img))
    assert hand.spacing_source == "anatomy" and hand.spacing_rel_uncertainty > 0
    assert hand.spacing_mm == pytest.approx(SP, rel=0.1)


def test_locator_refuses_what_is_no_hand():
    with pytest.raises((LocateError, ValueError)):
        locate_joints(np.full((200, 200), 5.0))
    g = np.random.default_rng(0)
    with pytest.raises(LocateError):
        locate_joints(g.random((200, 200)) * 0.01, spacing_mm=0.2)
    with pytest.raises(ValueError):
        locate_joints(np.zeros((10, 10)))
