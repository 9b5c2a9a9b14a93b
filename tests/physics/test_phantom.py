"""Finger-joint phantoms (lsn_fast.phantom): known JSW, determinism, physics sanity, errors.

The phantom's true JSW is computed analytically in its canonical frame; measure_jsw works on
the rendered (area-integrated, rotated, jittered) layers, so their agreement tests both.
"""


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lsn_fast.physics.jsw import estimate_axis, measure_jsw
from lsn_fast.physics.layers import LayerStack, angle_from_axis, axis_from_angle
from lsn_fast.physics.phantom import MU_ADIPOSE, MU_CORTICAL, MU_MUSCLE, generate

TOL_MM = 0.02


def without_axis(stack: LayerStack) -> LayerStack:
    return LayerStack(stack.soft, stack.upper, stack.lower, stack.spacing_mm, validate=False)


@pytest.fixture(scope="module")
def bank():
    """24 phantoms at 128², 0.2 mm (random JSW in [0, 3] mm, tilt ±10°, sub-pixel jitter)."""
    return generate(24, 128, 0.2, seed=11)


@pytest.fixture(scope="module")
def bank256():
    return generate(6, 256, 0.1, seed=5)


# ----------------------------------------------------------------------------- accuracy
def test_true_jsw_given_axis(bank, bank256):
    for stack, info in (bank, bank256):
        err = (measure_jsw(stack) - info["jsw_mm"]).abs()
        assert float(err.max()) < TOL_MM, err
    assert float(bank[1]["jsw_mm"].max()) > 1.5 and float(bank[1]["jsw_mm"].min()) < 1.0  # a spread of JSW


def test_true_jsw_estimated_axis(bank, bank256):
    for stack, info in (bank, bank256):
        bare = without_axis(stack)
        est = estimate_axis(bare)
        dang = (angle_from_axis(est) - info["tilt_deg"]).abs()
        assert float(dang.max()) < 2.0, dang
        err = (measure_jsw(bare) - info["jsw_mm"]).abs()
        assert float(err.max()) < TOL_MM, err


@settings(max_examples=12)
@given(
    seed=st.integers(0, 2**31 - 1),
    jsw=st.floats(0.0, 3.0),
    tilt=st.floats(-10.0, 10.0),
    spacing=st.sampled_from([0.15, 0.175, 0.2]),
)
def test_true_jsw_random(seed, jsw, tilt, spacing):
    stack, info = generate(1, 112, spacing, seed=seed, jsw_mm=jsw, tilt_deg=tilt)
    assert abs(float(info["jsw_mm"][0]) - jsw) < 1e-5
    assert abs(float(info["tilt_deg"][0]) - tilt) < 1e-4
    assert abs(float(measure_jsw(stack)[0]) - jsw) < TOL_MM
    assert abs(float(measure_jsw(without_axis(stack))[0]) - jsw) < TOL_MM


@pytest.mark.parametrize("tilt", [-10.0, 10.0])
def test_extreme_tilt_and_zero_jsw(tilt):
    jsw = torch.tensor([0.0, 0.05, 3.0])
    stack, info = generate(3, 128, 0.15, seed=3, jsw_mm=jsw, tilt_deg=tilt)
    assert torch.allclose(measure_jsw(stack), jsw, atol=TOL_MM)
    assert torch.allclose(measure_jsw(without_axis(stack)), jsw, atol=TOL_MM)


def test_with_jsw_hits_target(bank):
    stack, _ = bank
    stack = stack[:12]
    targets = torch.linspace(0.0, 3.0, 12)
    moved = stack.with_jsw(targets)
    assert torch.allclose(measure_jsw(moved), targets, atol=TOL_MM)
    moved = without_axis(stack).with_jsw(targets.flip(0))
    assert torch.allclose(measure_jsw(moved), targets.flip(0), atol=TOL_MM)


# ----------------------------------------------------------------------------- determinism
def test_deterministic_and_independent_of_n():
    a, ia = generate(3, 64, 0.3, seed=42)
    b, ib = generate(3, 64, 0.3, seed=42)
    for name in ("soft", "upper", "lower"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c, ic = generate(5, 64, 0.3, seed=42)
    for name in ("soft", "upper", "lower"):
        assert torch.allclose(getattr(a, name), getattr(c, name)[:3], rtol=0, atol=1e-6)
    assert torch.equal(ia["jsw_mm"], ic["jsw_mm"][:3])
    for k in ia["params"]:
        assert torch.equal(ia["params"][k], ic["params"][k][:3]), k
    d, _ = generate(3, 64, 0.3, seed=43)
    assert not torch.allclose(a.upper, d.upper)
    # the samples of one call differ from each other
    assert not torch.allclose(a.upper[0], a.upper[1])


def test_jsw_argument_forms():
    _, i1 = generate(2, 48, 0.5, seed=1, jsw_mm=1.25)
    assert torch.allclose(i1["jsw_mm"], torch.tensor([1.25, 1.25]))
    _, i2 = generate(2, 48, 0.5, seed=1, jsw_mm=[0.5, 2.5])
    assert torch.allclose(i2["jsw_mm"], torch.tensor([0.5, 2.5]))
    _, i3 = generate(2, 48, 0.5, seed=1, jsw_mm=torch.tensor([0.0, 3.0]))
    assert torch.allclose(i3["jsw_mm"], torch.tensor([0.0, 3.0]))
    _, i4 = generate(64, 32, 0.8, seed=9)
    j = i4["jsw_mm"]
    assert float(j.min()) >= 0.0 and float(j.max()) <= 3.0 and float(j.std()) > 0.5  # uniform in [0, 3]


# ----------------------------------------------------------------------------- physics
def test_physics_sanity(bank):
    stack, info = bank
    P = info["params"]
    for t in (stack.soft, stack.upper, stack.lower):
        assert t.dtype == torch.float32 and bool(torch.isfinite(t).all()) and float(t.min()) >= 0.0
    # the thickest soft-tissue path: through the centre of the finger at the joint bulge
    # (the finger tapers by |taper| per 10 mm, so the image top may be up to 18 mm · taper thicker)
    expect = 0.1 * 2 * (P["mu_fat"] * P["fat_b"] + (P["mu_soft"] - P["mu_fat"]) * P["core_b"]) * (1 + P["bulge"])
    smax = stack.soft.amax(dim=(1, 2))
    assert bool((smax >= 0.99 * expect).all()), (smax, expect)
    assert bool((smax <= expect * (1 + 1.8 * P["taper"].abs()) + 1e-4).all()), (smax, expect)
    # finger thickness 8–25 mm at μ ≈ 0.2 /cm
    assert float(smax.min()) > 0.15 and float(smax.max()) < 0.6
    # bone excess: at most (μ_cortical − μ_soft) × the thickest bone chord
    bmax = 0.1 * (MU_CORTICAL[1] - MU_MUSCLE[0]) * 2 * torch.maximum(P["b_h"], P["b_lb"]).max()
    assert float(torch.maximum(stack.upper.amax(), stack.lower.amax())) <= float(bmax) + 1e-6
    assert float(stack.upper.amax(dim=(1, 2)).min()) > 0.1 and float(stack.lower.amax(dim=(1, 2)).min()) > 0.1
    # attenuation values: within the documented ranges
    assert float(P["mu_fat"].min()) >= MU_ADIPOSE[0] and float(P["mu_fat"].max()) <= MU_ADIPOSE[1]
    assert float(P["mu_cort"].min()) >= MU_CORTICAL[0] and float(P["mu_cort"].max()) <= MU_CORTICAL[1]
    # soft tissue everywhere the bones are (the bones sit inside the finger)
    bone = (stack.upper > 1e-3) | (stack.lower > 1e-3)
    assert bool((stack.soft[bone] > 0.05).all())
    # the upper bone lies along the axis above the lower one
    H, W = stack.shape[1:]
    yy = torch.arange(H, dtype=torch.float32).view(1, H, 1) + 0.5
    xx = torch.arange(W, dtype=torch.float32).view(1, 1, W) + 0.5

    def centroid(m):
        s = m.sum(dim=(1, 2))
        return torch.stack([(m * yy).sum(dim=(1, 2)) / s, (m * xx).sum(dim=(1, 2)) / s], -1)

    along = ((centroid(stack.upper) - centroid(stack.lower)) * info["axis"]).sum(-1)
    assert bool((along > 0).all())


def test_bones_never_overlap():
    # with a gap of several px no pixel holds both bones
    stack, _ = generate(16, 96, 0.2, seed=21, jsw_mm=1.5)
    assert float((stack.upper * stack.lower).max()) == 0.0


def test_info_and_stack_layout():
    stack, info = generate(3, (72, 56), 0.25, seed=2, dtype=torch.float16)
    assert stack.shape == (3, 72, 56) and stack.dtype == torch.float16 and stack.spacing_mm == 0.25
    assert set(info) >= {"jsw_mm", "axis", "tilt_deg", "params", "spacing_mm", "seed"}
    assert info["jsw_mm"].shape == (3,) and info["jsw_mm"].dtype == torch.float32
    assert info["axis"].shape == (3, 2) and info["tilt_deg"].shape == (3,)
    assert torch.allclose(info["axis"], axis_from_angle(info["tilt_deg"]))
    assert torch.allclose(stack.axis, info["axis"])
    assert float(info["tilt_deg"].abs().max()) <= 10.0
    assert info["seed"] == 2 and info["spacing_mm"] == 0.25
    assert all(v.shape == (3,) for v in info["params"].values())
    full, _ = generate(3, (72, 56), 0.25, seed=2)
    assert torch.allclose(stack.upper.float(), full.upper, atol=2e-3)


@pytest.fixture
def one_thread():
    """Render on one thread (fast and steady on 2 shared cores); restores the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gap_centre_rows(stack: LayerStack, i: int = 0) -> torch.Tensor:
    """Untilted phantom ``i``: per column over the central half of the columns that hold both
    bones, the gap's centre row (edge coordinates) between the upper bone's last covered row and
    the lower bone's first. Each margin is exact to < 1 px (a partly covered pixel counts), so
    the centre is exact to ±½ px."""
    up, lo = stack.upper[i].float(), stack.lower[i].float()
    H, W = up.shape
    rows = torch.arange(H).view(H, 1).expand(H, W)
    cols = ((up > 0).any(0) & (lo > 0).any(0)).nonzero().view(-1)
    c0, c1 = int(cols.min()), int(cols.max())
    q = (c1 - c0 + 1) // 4
    sel = torch.arange(c0 + q, c1 - q + 1)
    end_u = torch.where(up > 0, rows, -1).amax(0)[sel] + 1.0
    start_l = torch.where(lo > 0, rows, H).amin(0)[sel].float()
    return 0.5 * (end_u + start_l)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gap_stays_at_the_joint_centre_at_every_jsw(seed, one_thread):
    """The joint (gap) centre is the origin of the canonical frame: the crop's centre plus the
    position jitter. For one anatomy (same seed; JSW >= 0.3 mm leaves every other draw unchanged)
    a wider gap opens symmetrically about the same centre line: per column, the centre row moves
    by at most 1 px (two ±½ px readings) between JSW 0.5, 1.5 and 2.9 mm (a gap grown from one
    side would move it by 5–12 px). Against the crop centre + ``jit_y`` the central columns'
    mean centre lies within 0.5 mm: the condylar end profile (notch depth ≤ 0.4 mm, curvature
    ≤ 0.9 mm·ξ², both × the anatomy scale 0.53 here) bends the gap's centre line that far at most."""
    sp, H = 0.1, 128
    centres = []
    for jsw in (0.5, 1.5, 2.9):
        stack, info = generate(1, H, sp, seed=seed, jsw_mm=jsw, tilt_deg=0.0)
        c = _gap_centre_rows(stack)
        centres.append(c)
        joint_centre = 0.5 * H + float(info["params"]["jit_y"][0]) / sp  # row (edge coordinates)
        assert abs(float(c.mean()) - joint_centre) * sp <= 0.5, (jsw, float(c.mean()), joint_centre)
    for c in centres[1:]:
        assert c.shape == centres[0].shape and float((c - centres[0]).abs().max()) <= 1.0, (c, centres[0])


def test_anatomy_scales_with_fields_of_view_under_24_mm(one_thread):
    """``spacing_mm`` docs: fields of view under 24 mm get proportionally smaller lateral anatomy
    (scale min(1, fov / 24 mm)); at 24 mm and above it is full size. Same seeds at 128 px and a
    field of view of 12, 18, 24 and 48 mm: each bone's widest row (the head / base, 2·half-width)
    divided by the scale 0.5, 0.75, 1, 1 is the same anatomy. A width read by counting covered
    columns is exact to [−⅛, +2] px, so the rescaled widths agree within 3 px / scale of the
    coarser of the two."""
    fovs = (12.0, 18.0, 24.0, 48.0)
    est = {}
    for fov in fovs:
        sp = fov / 128
        stack, _ = generate(4, 128, sp, seed=5, jsw_mm=1.0, tilt_deg=0.0)
        scale = min(1.0, fov / 24.0)
        est[fov] = [((getattr(stack, b) > 0).sum(-1).amax(-1) * sp / scale, 3 * sp / scale) for b in ("upper", "lower")]
    ref = est[24.0]
    for fov in fovs:
        for (w, tol), (w_ref, tol_ref) in zip(est[fov], ref):
            assert float((w - w_ref).abs().max()) <= max(tol, tol_ref), (fov, w, w_ref)
    assert float(ref[0][0].min()) > 5.0  # full-size heads are several mm wide: the check has teeth


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(n=0), ValueError, "n"),
        (dict(n=1.5), TypeError, "n"),
        (dict(n=True), TypeError, "n"),
        (dict(n=1, size=16), ValueError, "size"),
        (dict(n=1, size=(64,)), TypeError, "size"),
        (dict(n=1, size=64.0), TypeError, "size"),
        (dict(n=1, spacing_mm=0.0), ValueError, "spacing_mm"),
        (dict(n=1, spacing_mm=-0.1), ValueError, "spacing_mm"),
        (dict(n=1, spacing_mm=float("nan")), ValueError, "spacing_mm"),
        (dict(n=1, jsw_mm=-0.1), ValueError, "jsw_mm"),
        (dict(n=2, jsw_mm=[1.0, -0.01]), ValueError, "jsw_mm"),
        (dict(n=3, jsw_mm=[1.0, 2.0]), ValueError, "jsw_mm"),
        (dict(n=1, jsw_mm=float("inf")), ValueError, "jsw_mm"),
        (dict(n=1, tilt_deg=(5.0, -5.0)), ValueError, "tilt_deg"),
        (dict(n=1, seed="a"), TypeError, "seed"),
        (dict(n=1, dtype=torch.int32), TypeError, "dtype"),
        (dict(n=1, texture=-0.1), ValueError, "texture"),
        (dict(n=1, texture=float("nan")), ValueError, "texture"),
        (dict(n=1, texture=True), ValueError, "texture"),
    ],
)
def test_bad_arguments(kwargs, exc, name):
    kwargs = {"size": 48, "spacing_mm": 0.5, **kwargs}
    with pytest.raises(exc, match=rf"^{name}:"):
        generate(**kwargs)


def test_texture_scale_changes_only_the_bone_texture():
    """``texture=0`` removes the trabecular texture and nothing else (soft tissue, JSW, pose and the
    bones' mean density as drawn); the texture is a few % of the bone signal and grows with the
    scale (sub-linearly at 2×, where the contrast floor of 0.3 clips); the scaled contrast is
    reported."""
    a, ia = generate(4, 96, 0.1, seed=7)
    z, iz = generate(4, 96, 0.1, seed=7, texture=0.0)
    t2, i2 = generate(4, 96, 0.1, seed=7, texture=2.0)
    assert torch.equal(a.soft, z.soft) and torch.equal(a.axis, z.axis) and torch.equal(ia["jsw_mm"], iz["jsw_mm"])
    torch.testing.assert_close(measure_jsw(z), measure_jsw(a), atol=1e-4, rtol=0)
    for name in ("upper", "lower"):
        base = getattr(z, name)
        d1, d2 = getattr(a, name) - base, getattr(t2, name) - base
        assert 0.02 < float(d1.norm() / base.norm()) < 0.2  # texture: a few % of the bone signal
        assert abs(float(d1.sum() / base.sum())) < 0.03  # zero-mean: the density as drawn
        assert 1.5 < float(d2.norm() / d1.norm()) <= 2.0 + 1e-4
    torch.testing.assert_close(iz["params"]["tex_contrast"], torch.zeros(4))
    torch.testing.assert_close(i2["params"]["tex_contrast"], 2 * ia["params"]["tex_contrast"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cpu, info = generate(4, 128, 0.2, seed=8)
    gpu, _ = generate(4, 128, 0.2, seed=8, device="cuda")
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.upper.cpu(), cpu.upper, atol=1e-4)
    assert torch.allclose(measure_jsw(gpu).cpu(), info["jsw_mm"], atol=TOL_MM)
