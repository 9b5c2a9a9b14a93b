"""Public API: LayerStack, compose/synthesize validation and dispatch, the torch.library op."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lsn_fast as lf
from lsn_fast.physics.reference import synthesize_reference

from helpers import rect_stack, whole_pixel_copy


# --------------------------------------------------------------------------- LayerStack
def test_layerstack_accepts_2d_and_3d_and_dtypes():
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        x = torch.rand(5, 6).to(dt)
        s = lf.LayerStack(x, x, x, 0.1)
        assert s.shape == (1, 5, 6) and s.dtype == dt
    s = lf.LayerStack(torch.rand(3, 5, 6), torch.rand(3, 5, 6), torch.rand(3, 5, 6), 0.15, axis=5.0)
    assert s.axis.shape == (3, 2)
    assert torch.allclose(lf.angle_from_axis(s.axis), torch.full((3,), 5.0))


@pytest.mark.parametrize(
    "mutate,arg,exc",
    [
        (lambda s, u, l: (s * float("nan"), u, l), "soft", ValueError),
        (lambda s, u, l: (s, u.clone().fill_(float("inf")), l), "upper", ValueError),
        (lambda s, u, l: (s, u, l - 1.0), "lower", ValueError),
        (lambda s, u, l: (s, u[:, :4], l), "upper", ValueError),
        (lambda s, u, l: (s, u, l.double()), "lower", TypeError),
        (lambda s, u, l: (s, u.int(), l), "upper", TypeError),
        (lambda s, u, l: (s[:0], u[:0], l[:0]), "soft", ValueError),
        (lambda s, u, l: (s.numpy(), u, l), "soft", TypeError),
        (lambda s, u, l: (s[0, 0], u[0, 0], l[0, 0]), "soft", ValueError),
    ],
)
def test_layerstack_rejects_bad_layers(mutate, arg, exc):
    s, u, l = (torch.rand(2, 5, 6) for _ in range(3))
    with pytest.raises(exc, match=arg):
        lf.LayerStack(*mutate(s, u, l), 0.1)


@pytest.mark.parametrize("spacing", [0.0, -0.1, float("nan"), float("inf")])
def test_layerstack_rejects_bad_spacing(spacing):
    x = torch.rand(2, 5, 6)
    with pytest.raises(ValueError, match="spacing_mm"):
        lf.LayerStack(x, x, x, spacing)


def test_layerstack_rejects_bad_axis():
    x = torch.rand(2, 5, 6)
    with pytest.raises(ValueError, match="axis"):
        lf.LayerStack(x, x, x, 0.1, axis=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="axis"):
        lf.LayerStack(x, x, x, 0.1, axis=torch.ones(3, 2))


def test_layerstack_indexing_and_to_and_cat():
    st = rect_stack(B=4)
    one = st[2]
    assert one.shape == (1,) + st.shape[1:]
    assert torch.equal(one.upper[0], st.upper[2])
    sub = st[torch.tensor([3, 0])]
    assert torch.equal(sub.soft[1], st.soft[0]) and sub.axis.shape == (2, 2)
    with pytest.raises(IndexError):
        st[7]
    with pytest.raises(IndexError, match="index"):
        st[torch.tensor([0, 9])]
    half = st.to(torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.axis.dtype == torch.float32
    both = lf.LayerStack.cat([st, sub])
    assert both.batch_size == 6
    assert torch.equal(both.attenuation(), torch.cat([st.attenuation(), sub.attenuation()]))


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layerstack_save_load_roundtrip(tmp_path, ext, dtype):
    st = rect_stack(B=3).to(dtype)
    p = tmp_path / ("stack" + ext)
    st.save(p)
    back = lf.LayerStack.load(p)
    assert back.dtype == dtype and back.spacing_mm == st.spacing_mm
    for a, b in ((back.soft, st.soft), (back.upper, st.upper), (back.lower, st.lower), (back.axis, st.axis)):
        assert torch.equal(a, b)


def test_layerstack_load_rejects_garbage(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ValueError, match="path"):
        lf.LayerStack.load(p)
    with pytest.raises(FileNotFoundError):
        lf.LayerStack.load(tmp_path / "missing.safetensors")


# --------------------------------------------------------------------------- with_residual
@settings(max_examples=25)
@given(B=st.integers(1, 3), H=st.integers(3, 19), W=st.integers(3, 17), noise=st.floats(0.0, 0.3),
       transpose=st.booleans(), seed=st.integers(0, 2**16))
def test_with_residual_sums_to_the_image_and_keeps_the_fractions(B, H, W, noise, transpose, seed):
    """The carried stack sums to the image exactly (float32 rounding); where there is tissue
    each layer keeps its share of the total; air pixels give everything to the soft layer;
    odd sizes, non-contiguous images and B = 1 included."""
    g = torch.Generator().manual_seed(seed)
    s, u, l = (torch.rand(B, H, W, generator=g) for _ in range(3))
    u[:, :, : W // 2] = 0.0
    s[:, 0, :], u[:, 0, :], l[:, 0, :] = 0.0, 0.0, 0.0  # an air row
    stack = lf.LayerStack(s, u, l, 0.2, axis=7.0)
    img = stack.attenuation() + noise * torch.randn(B, H, W, generator=g)
    if transpose:  # the same values through a non-contiguous view
        img = img.transpose(1, 2).contiguous().transpose(1, 2)
        assert not img.is_contiguous()
    out = stack.with_residual(img.unsqueeze(1) if seed % 2 else img)
    torch.testing.assert_close(out.attenuation(), img, atol=1e-5, rtol=1e-5)
    tissue = stack.attenuation() > 1e-3
    for new, old in ((out.soft, s), (out.upper, u), (out.lower, l)):
        frac_new = new / out.attenuation()
        frac_old = old / stack.attenuation()
        ok = tissue & (img.abs() > 1e-3)
        torch.testing.assert_close(frac_new[ok], frac_old[ok], atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(out.soft[:, 0], img[:, 0], atol=1e-6, rtol=0)
    assert float(out.upper[:, 0].abs().max()) == 0.0 and float(out.lower[:, 0].abs().max()) == 0.0
    assert torch.equal(out.axis, stack.axis) and out.spacing_mm == 0.2 and out.dtype == stack.dtype


def test_with_residual_texture_moves_with_the_bone(small_stack):
    """What a moved bone takes along: a texture added only inside the upper bone shows up,
    after a 3 px shift, 3 px further along the axis; without the residual it is gone."""
    tex = torch.zeros_like(small_stack.upper)
    tex[:, 6:12:2, 10:30:3] = 0.05
    tex = tex * (small_stack.upper > 0)
    img = small_stack.attenuation() + tex
    moved = lf.compose(small_stack.with_residual(img), shift_px=3.0)[:, 0]
    plain = lf.compose(small_stack, shift_px=3.0)[:, 0]
    frac = small_stack.upper / small_stack.attenuation()
    # the bone's share moves up by 3 rows (axis (-1, 0)); the soft tissue's share stays
    expected = torch.roll(tex * frac, -3, dims=1) + tex * (1 - frac)
    torch.testing.assert_close((moved - plain)[:, :-3], expected[:, :-3], atol=1e-5, rtol=0)
    assert float(torch.roll(tex * frac, -3, dims=1).abs().max()) > 0.02


def test_with_residual_labels_by_the_plain_layers_geometry():
    """Fed a carried stack, ``synthesize`` and ``JSWStream`` use the plain layers' axis and JSW
    (noisy bone layers would measure differently): the labels equal the plain stream's, and the
    images differ from the plain ones only by the residual the layers carry."""
    st, _ = lf.phantom.generate(3, size=64, spacing_mm=0.2, seed=11, tilt_deg=0.0)
    noise = 0.03 * torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    carried = st.with_residual(st.attenuation() + noise)
    jsw0 = lf.measure_jsw(st)
    assert float((lf.measure_jsw(lf.LayerStack(carried.soft, carried.upper, carried.lower, 0.2, carried.axis,
                                              validate=False)) - jsw0).abs().max()) > 1e-4  # the noise moves it
    imgs, lab = lf.synthesize(carried, torch.tensor([0, 1, 2]), jsw_mm=torch.tensor([1.0, 2.0, 0.5]))
    plain_imgs, plain_lab = lf.synthesize(st, torch.tensor([0, 1, 2]), jsw_mm=torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(lab, plain_lab)
    x0, y0, i0 = next(iter(lf.JSWStream(st, batch_size=4, seed=5)))
    x1, y1, i1 = next(iter(lf.JSWStream(carried, batch_size=4, seed=5)))
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(i1["jsw0_mm"], jsw0[i1["bank_index"]])
    # the cache follows .to(): a bf16 carried bank still labels by the plain float32 geometry
    # (measured on its own noisy bf16 layers, jsw0 would be up to ~0.05 mm off here)
    half = carried.to(torch.bfloat16)
    x2, y2, i2 = next(iter(lf.JSWStream(half, batch_size=4, seed=5)))
    torch.testing.assert_close(y2, y0)
    torch.testing.assert_close(i2["jsw0_mm"], jsw0[i2["bank_index"]])
    same = torch.tensor([0.0, 0.0, 0.0])  # no move: the carried image is the noisy source
    back, _ = lf.synthesize(carried, torch.tensor([0, 1, 2]), shift_px=same)
    torch.testing.assert_close(back[:, 0], st.attenuation() + noise, atol=1e-5, rtol=0)


def test_with_residual_blur_carries_each_bones_blurred_edge():
    """An image blurred by σ = 1 px (noise-free): :meth:`fit_blur` finds σ, and the carried stack
    with ``blur_sigma_px`` moved by whole pixels composes to the blurred moved anatomy (blur
    commutes with translation), where the plain carry leaves the bone's outer skirt behind."""
    from lsn_fast.physics.moves import whole_pixel_copy as _wp
    from lsn_fast.physics.reference import gaussian_blur

    st, _ = lf.phantom.generate(3, size=64, spacing_mm=0.2, seed=11, tilt_deg=0.0)
    sig = torch.full((3,), 1.0)
    img = gaussian_blur(st.attenuation().float(), sig)
    torch.testing.assert_close(st.fit_blur(img), sig)
    torch.testing.assert_close(st.fit_blur(gaussian_blur(st.attenuation().float(), sig * 0.4)), sig * 0.4)
    blurred = st.with_residual(img, blur_sigma_px=st.fit_blur(img))
    plain = st.with_residual(img)
    torch.testing.assert_close(blurred.attenuation(), img, atol=1e-5, rtol=0)  # still sums to the image
    up = torch.tensor([[-3.0, 0.0]] * 3)  # the upper bone 3 px up (axis (-1, 0)): the joint opens 3 px
    moved_true = lf.LayerStack(st.soft, st.upper.roll(-3, 1), st.lower, 0.2, validate=False)
    want = gaussian_blur(moved_true.attenuation().float(), sig)[:, 8:-8, 8:-8]

    def moved(stack):
        return (stack.soft + _wp(stack.upper, up) + stack.lower)[:, 8:-8, 8:-8]

    err_blur = float((moved(blurred) - want).abs().max())
    err_plain = float((moved(plain) - want).abs().max())
    assert err_blur < 1e-4, err_blur
    assert err_plain > 20 * max(err_blur, 1e-5), (err_plain, err_blur)
    with pytest.raises(ValueError, match="blur_sigma_px"):
        st.with_residual(img, blur_sigma_px=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="sigmas"):
        st.fit_blur(img, sigmas=(-1.0,))


def test_with_residual_bad_input(small_stack):
    with pytest.raises(TypeError, match="image"):
        small_stack.with_residual(small_stack.attenuation().numpy())
    with pytest.raises(ValueError, match="image"):
        small_stack.with_residual(torch.zeros(2, 47, 40))
    with pytest.raises(ValueError, match="image"):
        small_stack.with_residual(small_stack.attenuation() * float("nan"))
    with pytest.raises(ValueError, match="air"):
        small_stack.with_residual(small_stack.attenuation(), air=0.0)


# --------------------------------------------------------------------------- compose API
def test_compose_without_detector_is_attenuation(small_stack):
    out = lf.compose(small_stack)
    assert out.shape == (2, 1, 48, 40)
    assert torch.equal(out[:, 0], small_stack.attenuation())


def test_compose_shift_moves_upper_bone_along_axis(small_stack):
    out = lf.compose(small_stack, shift_px=3.0)  # axis (-1, 0): the upper bone moves up 3 px
    expected = small_stack.soft + torch.roll(small_stack.upper, -3, dims=1) + small_stack.lower
    assert torch.allclose(out[:, 0, :-3], expected[:, :-3])


def test_compose_lower_bone_moves_against_axis(small_stack):
    out = lf.compose(small_stack, shift_px=2.0, bone="lower")
    expected = small_stack.soft + small_stack.upper + torch.roll(small_stack.lower, 2, dims=1)
    assert torch.allclose(out[:, 0, 2:], expected[:, 2:])


def test_compose_both_bones_move_half_each(small_stack):
    """``bone="both"``: the upper bone moves along the axis and the lower bone against it by
    half the shift each (independent reference: ``torch.roll`` by whole pixels), so the gap's
    centre stays put."""
    out = lf.compose(small_stack, shift_px=4.0, bone="both")  # axis (-1, 0): upper up 2 px, lower down 2 px
    expected = small_stack.soft + torch.roll(small_stack.upper, -2, dims=1) + torch.roll(small_stack.lower, 2, dims=1)
    assert torch.allclose(out[:, 0, 2:-2], expected[:, 2:-2])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_compose_both_bones_value_and_gradients_match_shifted(backend):
    """``compose(bone="both")`` moves the lower bone in PyTorch and the upper bone in the fused
    op; its image and its gradients w.r.t. the shift and the layers equal the plain
    ``LayerStack.shifted(bone="both")`` composite (tilted phantoms, fractional shifts)."""
    st, _ = lf.phantom.generate(3, size=48, spacing_mm=0.2, seed=2, tilt_deg=(-8.0, 8.0))
    axis = st.resolved_axis()
    w = torch.randn(3, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    grads = []
    for path in ("compose", "shifted"):
        shift = torch.tensor([2.3, -1.7, 0.9], requires_grad=True)
        upper = st.upper.clone().requires_grad_(True)
        stack = lf.LayerStack(st.soft, upper, st.lower, 0.2, axis, validate=False)
        if path == "compose":
            img = lf.compose(stack, shift_px=shift, bone="both", backend=backend)
        else:
            img = stack.shifted(shift, bone="both").attenuation()[:, None]
        (img * w).sum().backward()
        grads.append((img.detach(), shift.grad, upper.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_synthesize_both_bones_keeps_the_label_and_the_gap_centre(backend):
    """On phantoms: ``synthesize(..., bone="both")`` reaches the requested JSW (measured on
    the moved layers within 0.01 mm), its images are those of the moved stack through the same
    detector and noise keys, and the midpoint between the bones' facing margins stays where it
    was (the bones' centroids: within 5 % of the shift) while a one-bone move shifts it towards
    half the change."""
    st, info = lf.phantom.generate(3, size=64, spacing_mm=0.2, seed=4, tilt_deg=(-8.0, 8.0), jsw_mm=torch.tensor([1.0, 2.2, 0.6]))
    st = lf.LayerStack(st.soft, st.upper, st.lower, 0.2, st.resolved_axis(), validate=False)
    target = torch.tensor([2.0, 0.7, 2.9])
    det = lf.Detector(n0=1e4, blur_sigma_px=0.5)
    imgs, lab = lf.synthesize(st, torch.tensor([0, 1, 2]), jsw_mm=target, detector=det, seed=3, backend=backend,
                              bone="both")
    torch.testing.assert_close(lab, target)
    moved = st.with_jsw(target, bone="both")
    torch.testing.assert_close(lf.measure_jsw(moved), target, atol=0.01, rtol=0)
    ref = lf.compose(moved, detector=det, seed=3, backend=backend)
    torch.testing.assert_close(imgs, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(moved.upper, st.shifted(st.shift_for_jsw(target) / 2).upper)

    def centre(s):  # midpoint of the two bones' centroids along the axis, px
        ys = torch.arange(64).view(1, 64, 1) + 0.5
        xs = torch.arange(64).view(1, 1, 64) + 0.5
        along = ys * s.axis[:, 0].view(-1, 1, 1) + xs * s.axis[:, 1].view(-1, 1, 1)
        return 0.5 * ((s.upper * along).sum((1, 2)) / s.upper.sum((1, 2)) + (s.lower * along).sum((1, 2)) / s.lower.sum((1, 2)))

    shift = st.shift_for_jsw(target)
    d_both = centre(moved) - centre(st)
    d_one = centre(st.with_jsw(target)) - centre(st)
    # the shafts run into the image border, where edge clamping keeps mass: neither is exact
    assert bool((d_both.abs() < 0.05 * shift.abs()).all())
    assert bool((d_one * shift > 0.2 * shift ** 2).all())  # same sign, at least 40 % of the half shift


def test_noise_same_for_same_index_across_batch_sizes_and_orders(small_stack):
    det = lf.Detector(n0=3e3)
    big = lf.LayerStack.cat([small_stack, small_stack[0]])
    y = lf.compose(big, detector=det, seed=11, sample_index=torch.tensor([5, 6, 7]))
    y1 = lf.compose(small_stack[1], detector=det, seed=11, sample_index=torch.tensor([6]))
    assert torch.equal(y[1], y1[0])
    rev = lf.compose(big[torch.tensor([2, 1, 0])], detector=det, seed=11, sample_index=torch.tensor([7, 6, 5]))
    assert torch.equal(rev.flip(0), y)
    other_seed = lf.compose(big, detector=det, seed=12, sample_index=torch.tensor([5, 6, 7]))
    assert not torch.equal(other_seed, y)


def test_compose_errors_name_the_argument(small_stack):
    with pytest.raises(TypeError, match="stack"):
        lf.compose(small_stack.soft)
    with pytest.raises(ValueError, match="jsw_mm, shift_px"):
        lf.compose(small_stack, jsw_mm=1.0, shift_px=1.0)
    with pytest.raises(ValueError, match="jsw_mm"):
        lf.compose(small_stack, jsw_mm=-0.1)
    with pytest.raises(ValueError, match="shift_px"):
        lf.compose(small_stack, shift_px=float("nan"))
    with pytest.raises(ValueError, match="shift_px"):
        lf.compose(small_stack, shift_px=torch.ones(5))
    with pytest.raises(ValueError, match="shift_px"):  # gap is 8 px = 0.8 mm: -9 px closes it
        lf.compose(small_stack, shift_px=-9.0)
    with pytest.raises(TypeError, match="detector"):
        lf.compose(small_stack, detector="poisson")
    with pytest.raises(ValueError, match="n0"):
        lf.compose(small_stack, detector=lf.Detector(n0=-5))
    with pytest.raises(ValueError, match="blur_sigma_px"):
        lf.compose(small_stack, detector=lf.Detector(blur_sigma_px=torch.tensor([0.5, float("nan")])))
    with pytest.raises(ValueError, match="noise"):
        lf.Detector(noise="speckle")
    with pytest.raises(ValueError, match="seed"):
        lf.compose(small_stack, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        lf.compose(small_stack, seed=1.5)
    with pytest.raises(ValueError, match="interp"):
        lf.compose(small_stack, interp="nearest")
    with pytest.raises(ValueError, match="bone"):
        lf.compose(small_stack, bone="middle")
    with pytest.raises(ValueError, match="bone"):
        small_stack.shifted(1.0, bone="random")
    with pytest.raises(ValueError, match="backend"):
        lf.compose(small_stack, backend="nope")
    with pytest.raises(ValueError, match="sample_index"):
        lf.compose(small_stack, sample_index=torch.tensor([-1, 0]))


def test_detector_ranges_are_checked_where_the_value_is_given(small_stack):
    # without an upper bound, blur_sigma_px=1e7 hung the C++ blur (radius ceil(3σ) per pixel) and
    # 1e9 overflowed its int radius into NaN; scatter=1e38 and min_counts=inf gave inf/NaN images
    for field, value in (("blur_sigma_px", 1e7), ("scatter_sigma_px", 1e7), ("scatter", 1e38), ("n0", 1e39),
                         ("electronic_sigma", 1e9), ("min_counts", float("inf"))):
        with pytest.raises(ValueError, match=f"^{field}"):
            lf.Detector(**{field: value})
    with pytest.raises(ValueError, match="^blur_sigma_px: every value must be <= 1000"):
        lf.compose(small_stack, detector=lf.Detector(blur_sigma_px=torch.tensor([0.5, 2e3])))
    assert lf.Detector(blur_sigma_px=1000.0, scatter=100.0).params(2).shape == (2, 5)  # the bounds themselves pass
    # float16 counts would overflow to inf above 65504
    with pytest.raises(ValueError, match="^out_dtype: float16"):
        lf.compose(small_stack, detector=lf.Detector(n0=1e5, output="counts"), out_dtype=torch.float16)
    out = lf.compose(small_stack, detector=lf.Detector(n0=1e4, output="counts"), out_dtype=torch.float16)
    assert bool(torch.isfinite(out).all())


def test_axis_angles_must_be_finite(small_stack):
    with pytest.raises(ValueError, match="^axis"):
        lf.LayerStack(small_stack.soft, small_stack.upper, small_stack.lower, 0.1, float("nan"))
    with pytest.raises(ValueError, match="^axis"):
        lf.measure_jsw(small_stack, axis=float("inf"))
    with pytest.raises(ValueError, match="^angle_deg"):
        lf.axis_from_angle(torch.tensor([0.0, float("nan")]))


def test_whole_pixel_helpers_check_their_arguments():
    j0, tgt, ax = torch.ones(2), torch.tensor([1.5, 0.5]), torch.tensor([[-1.0, 0.0]] * 2)
    with pytest.raises(ValueError, match="^spacing_mm"):
        lf.whole_pixel_moves(j0, tgt, ax, 0.0)
    with pytest.raises(TypeError, match="^jsw0_mm"):
        lf.whole_pixel_moves([1.0, 1.0], tgt, ax, 0.1)
    with pytest.raises(ValueError, match="^axis"):
        lf.whole_pixel_moves(j0, tgt, ax[:1], 0.1)
    with pytest.raises(ValueError, match="^disp"):
        lf.split_whole_pixel([[3.0, 1.0]])
    reached, d = lf.whole_pixel_moves(j0, tgt, ax, 0.1)  # 5 px along -y opens, 5 px along +y closes
    torch.testing.assert_close(reached, tgt)
    assert d.tolist() == [[-5.0, 0.0], [5.0, 0.0]]


def test_register_backend_checks_its_arguments():
    from lsn_fast.ops import registry

    before = dict(registry._REGISTRY)
    try:
        with pytest.raises(TypeError, match="^priority"):  # a str priority broke every later call
            lf.register_backend("probe", ("cpu",), "high", lambda: {})
        with pytest.raises(ValueError, match="^devices"):
            lf.register_backend("probe", ("gpu",), 1, lambda: {})
        with pytest.raises(ValueError, match="^name"):
            lf.register_backend("", ("cpu",), 1, lambda: {})
        with pytest.raises(TypeError, match="^loader"):
            lf.register_backend("probe", ("cpu",), 1, None)
        assert "probe" not in registry._REGISTRY
        lf.register_backend("probe", "cpu", -1, lambda: {})  # a bare device string is one device
        assert registry._REGISTRY["probe"].devices == ("cpu",)
        assert lf.backends()["probe"] is True
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(before)
        registry._LOADED.pop("probe", None)


def test_compose_jsw_below_zero_is_an_error_not_a_clamp(small_stack):
    out = lf.compose(small_stack, shift_px=-7.5)  # 8 px gap -> 0.5 px, allowed, and moved exactly
    axis = small_stack.resolved_axis()
    moved = lf.reference.translate(small_stack.upper, -7.5 * axis)
    torch.testing.assert_close(out[:, 0], small_stack.soft + moved + small_stack.lower, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="^shift_px: would make JSW < 0"):  # 8 px gap, -8.1 px: no clamp
        lf.compose(small_stack, shift_px=-8.1)


# --------------------------------------------------------------------------- synthesize
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("bone", ["upper", "lower", "both"])
def test_synthesize_whole_pixel_moves(backend, bone):
    """``moves="integer"``: the move along the axis is rounded per component to whole pixels
    (d = round(shift·axis), one pixel wider if that closed the joint), the moved bones are exact
    copies (noiseless image = soft + copies; both: upper floor(d/2), lower the rest, against it),
    and the label is the JSW reached: the moved layers' measured JSW, within 0.71 px of the target."""
    st, info = lf.phantom.generate(4, size=64, spacing_mm=0.2, seed=8, tilt_deg=(-12.0, 12.0),
                                   jsw_mm=torch.tensor([1.0, 2.2, 0.6, 0.3]))
    st = lf.LayerStack(st.soft, st.upper, st.lower, 0.2, st.resolved_axis(), validate=False)
    idx = torch.tensor([0, 1, 2, 3, 1])
    target = torch.tensor([2.05, 0.73, 2.9, 0.0, 1.41])
    imgs, lab = lf.synthesize(st, idx, jsw_mm=target, backend=backend, bone=bone, moves="integer")
    jsw0, axis = lf.measure_jsw(st)[idx], st.axis[idx]
    d = torch.round(((target - jsw0) / 0.2)[:, None] * axis)
    closed = jsw0 + (d * axis).sum(1) * 0.2 < 0
    d = torch.where(closed[:, None], torch.round(((target - jsw0) / 0.2 + 1)[:, None] * axis), d)
    ups, lows = [], []
    for k in range(5):
        up = {"upper": d[k], "lower": torch.zeros(2), "both": torch.div(d[k], 2, rounding_mode="floor")}[bone]
        low = {"upper": torch.zeros(2), "lower": d[k], "both": d[k] - torch.div(d[k], 2, rounding_mode="floor")}[bone]
        ups.append(whole_pixel_copy(st.upper[idx[k]], up))
        lows.append(whole_pixel_copy(st.lower[idx[k]], -low))
    moved = lf.LayerStack(st.soft[idx], torch.stack(ups), torch.stack(lows), 0.2, axis, validate=False)
    torch.testing.assert_close(imgs[:, 0], moved.attenuation(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lab, (jsw0 + (d * axis).sum(1) * 0.2).clamp_min(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(lf.measure_jsw(moved), lab, atol=0.02, rtol=0)
    assert bool((lab >= 0).all()) and bool(((lab - target).abs() <= 0.71 * 0.2 * 2 + 1e-5).all())
    # a shift in px is rounded the same way
    _, lab2 = lf.synthesize(st, idx, shift_px=2.4, backend=backend, bone=bone, moves="integer")
    torch.testing.assert_close(lab2, jsw0 + (torch.round(2.4 * axis) * axis).sum(1) * 0.2, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="moves"):
        lf.synthesize(st, idx, jsw_mm=target, moves="nearest")


def test_whole_pixel_copy_equals_translate():
    """The gather behind whole-pixel moves gives reference.translate's values exactly, for moves
    beyond the image, odd sizes, non-contiguous input, and keeps a 16-bit layer's dtype."""
    from lsn_fast.physics.moves import whole_pixel_copy as _whole_pixel_copy
    from lsn_fast.physics.reference import translate

    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 23, 17, generator=g)
    d = torch.tensor([[0.0, 0.0], [3.0, -2.0], [-30.0, 1.0], [1.0, 40.0], [-1.0, -1.0]])
    torch.testing.assert_close(_whole_pixel_copy(x, d), translate(x, d), atol=0, rtol=0)
    xt = torch.rand(5, 17, 23, generator=g).transpose(1, 2)  # non-contiguous
    torch.testing.assert_close(_whole_pixel_copy(xt, d), translate(xt, d), atol=0, rtol=0)
    xb = x.to(torch.bfloat16)
    out = _whole_pixel_copy(xb, d)
    assert out.dtype == torch.bfloat16 and torch.equal(out.float(), translate(xb, d))


def test_synthesize_labels_and_bank_indexing():
    bank = rect_stack(B=3, gap_px=10.0)
    idx = torch.tensor([2, 0, 2, 1])
    imgs, jsw = lf.synthesize(bank, idx, shift_px=torch.tensor([0.0, 2.0, -3.0, 1.5]))
    assert imgs.shape == (4, 1, 48, 40)
    assert torch.allclose(jsw, torch.tensor([1.0, 1.2, 0.7, 1.15]), atol=0.02)
    expect = lf.compose(bank[2], shift_px=-3.0)
    assert torch.allclose(imgs[2], expect[0])
    imgs2, jsw2 = lf.synthesize(bank, idx, jsw_mm=0.5)
    assert torch.allclose(jsw2, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="index"):
        lf.synthesize(bank, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="index"):
        lf.synthesize(bank, torch.tensor([], dtype=torch.int64))
    with pytest.raises(TypeError, match="index"):
        lf.synthesize(bank, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shift_px"):
        lf.synthesize(bank, idx, shift_px=-20.0)
    with pytest.raises(TypeError, match="out_dtype"):
        lf.synthesize(bank, idx, out_dtype=torch.int32)


def test_synthesize_out_dtypes_and_16bit_storage():
    bank = rect_stack(B=2)
    ref, _ = lf.synthesize(bank, torch.tensor([0, 1]), shift_px=0.5, detector=lf.Detector(), seed=3)
    for dt in (torch.float16, torch.bfloat16):
        out, _ = lf.synthesize(bank.to(dt), torch.tensor([0, 1]), shift_px=0.5, detector=lf.Detector(), seed=3, out_dtype=dt)
        assert out.dtype == dt
        assert torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-2)


# --------------------------------------------------------------------------- registry & op
def test_backends_lists_reference():
    b = lf.backends()
    assert b["reference"] is True
    assert set(b) >= {"reference", "cpu", "triton", "cuda"}


def test_explicit_unavailable_backend_raises(monkeypatch, small_stack):
    from lsn_fast.ops import registry as reg

    if reg.backends()["cuda"]:
        pytest.skip("cuda available")
    with pytest.raises(ValueError, match="backend 'cuda' runs on"):
        lf.compose(small_stack, backend="cuda")
    monkeypatch.setenv("LSN_FAST_BACKEND", "cuda")
    with pytest.raises(ValueError, match="LSN_FAST_BACKEND"):
        lf.compose(small_stack)


def test_auto_skips_a_backend_that_fails_to_import(small_stack):
    from lsn_fast.ops import registry as reg

    def broken():
        raise ImportError("simulated missing extension")

    saved = reg._REGISTRY.get("cpu")
    try:
        reg.register_backend("cpu", ("cpu",), 99, broken)
        out = lf.compose(small_stack)  # auto falls back quietly
        assert torch.equal(out[:, 0], small_stack.attenuation())
        assert reg.backends()["cpu"] is False
        with pytest.raises(RuntimeError, match="simulated missing extension"):
            lf.compose(small_stack, backend="cpu")
    finally:
        reg._REGISTRY["cpu"] = saved
        reg._LOADED.pop("cpu", None)


def test_op_gradient_matches_reference_gradient():
    bank = rect_stack(B=2, H=12, W=10, gap_px=4.0)
    det = lf.Detector(n0=2e3, noise="gaussian", blur_sigma_px=0.7)
    shift = torch.tensor([0.4, -0.3], requires_grad=True)
    soft = bank.soft.clone().requires_grad_(True)
    st = lf.LayerStack(soft, bank.upper, bank.lower, bank.spacing_mm, bank.axis, validate=False)
    out = lf.compose(st, shift_px=shift, detector=det, seed=5, backend="reference")
    w = torch.rand_like(out)
    (out * w).sum().backward()
    s2 = shift.detach().clone().requires_grad_(True)
    soft2 = bank.soft.clone().requires_grad_(True)
    disp = s2[:, None] * bank.axis
    ref = synthesize_reference(soft2, bank.upper, bank.lower, torch.arange(2), disp, det.params(2), seed=5, noise_mode=1)
    (ref * w).sum().backward()
    assert torch.allclose(shift.grad, s2.grad, rtol=1e-5, atol=1e-5)
    assert torch.allclose(soft.grad, soft2.grad, rtol=1e-5, atol=1e-6)


def test_op_works_under_torch_compile_without_graph_breaks():
    pytest.importorskip("torch._dynamo")
    bank = rect_stack(B=2, H=12, W=10)
    params = lf.Detector(noise="gaussian").params(2)
    idx = torch.arange(2)
    si = torch.arange(2)

    def f(soft, disp):
        y = torch.ops.lsn_fast.synthesize(soft, bank.upper, bank.lower, idx, disp, params, si, False, 7, 1, 0, 0, 0.5, torch.float32, "reference")
        return y * 2.0

    import torch._dynamo as dynamo

    disp = torch.tensor([[0.5, 0.0], [-0.25, 0.1]])
    explain = dynamo.explain(f)(bank.soft, disp)
    assert explain.graph_break_count == 0
    compiled = torch.compile(f, backend="eager", fullgraph=True)
    assert torch.allclose(compiled(bank.soft, disp), f(bank.soft, disp))


def test_op_opcheck():
    bank = rect_stack(B=2, H=10, W=9)
    params = lf.Detector(noise="gaussian").params(2)
    args = (bank.soft, bank.upper, bank.lower, torch.arange(2), torch.tensor([[0.5, 0.0], [-0.25, 0.1]]), params,
            torch.arange(2), False, 7, 1, 0, 0, 0.5, torch.float32, "reference")
    torch.library.opcheck(torch.ops.lsn_fast.synthesize.default, args, test_utils=("test_schema", "test_faketensor"))


def test_seed_is_full_uint64(small_stack):
    det = lf.Detector()
    a = lf.compose(small_stack, detector=det, seed=2**64 - 1)
    b = lf.compose(small_stack, detector=det, seed=2**63 + 5)
    assert torch.isfinite(a).all() and not torch.equal(a, b)
    assert math.isfinite(float(a.mean()))


def test_layerstack_rejects_mixed_devices():
    x = torch.rand(2, 5, 6)
    with pytest.raises(ValueError, match="lower: on device meta"):
        lf.LayerStack(x, x, torch.empty(2, 5, 6, device="meta"), 0.1, validate=False)


def test_every_public_name_resolves_and_has_a_docstring():
    # __all__ is what docs point users at (e.g. lf.whole_pixel_moves); a lazy entry that no
    # longer resolves, or an undocumented export, fails here rather than in a user's session
    for name in lf.__all__:
        obj = getattr(lf, name)
        if name != "__version__":
            assert (getattr(obj, "__doc__", None) or "").strip(), f"lsn_fast.{name} has no docstring"
    import importlib

    compose_module = importlib.import_module("lsn_fast.synthesis.compose")  # lf.compose is the function
    assert lf.whole_pixel_moves is compose_module.whole_pixel_moves
    assert lf.split_whole_pixel is compose_module.split_whole_pixel


def test_more_bad_inputs_get_named_errors(small_stack, tmp_path):
    st = small_stack
    with pytest.raises(ValueError, match="^stack: empty batch"):  # cpu raised its own message, reference returned ()
        lf.compose(st[5:])
    with pytest.raises(TypeError, match="^index"):  # was torch's "Could not infer dtype of NoneType"
        lf.synthesize(st, None, jsw_mm=1.0)
    with pytest.raises(ValueError, match="^shift_px"):  # a grad-carrying shift of the wrong batch
        lf.compose(st, shift_px=torch.ones(4, requires_grad=True), backend="reference")
    with pytest.raises(ValueError, match="^stacks"):
        lf.LayerStack.cat([st, lf.phantom.generate(1, size=48, spacing_mm=st.spacing_mm)[0]])
    with pytest.raises(TypeError, match="^stacks"):
        lf.LayerStack.cat([st, st.soft])
    with pytest.raises(TypeError, match="^flip"):
        st.rotated(0.0, flip=None)
    with pytest.raises(ValueError, match="^upper"):  # a float32 overflow in torch before
        st.scaled(upper=1e39)
    with pytest.raises(ValueError, match="^spacing_mm"):  # gave negative soft tissue
        lf.phantom.generate(1, size=32, spacing_mm=1000.0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device"):  # was torch's AssertionError
            lf.phantom.generate(1, size=32, device="cuda")
    stream = lf.JSWStream(st, 2, backend="reference")
    with pytest.raises(TypeError, match="^index"):  # 1.7 was silently drawn as 1
        stream.draws([1.7, 2.2])
    with pytest.raises(ValueError, match="^info"):
        stream.record({})
    from safetensors.torch import save_file

    bad = tmp_path / "empty_spacing.safetensors"
    save_file({"soft": st.soft.contiguous(), "upper": st.upper.contiguous(), "lower": st.lower.contiguous(),
               "spacing_mm": torch.zeros(0)}, str(bad))
    with pytest.raises(ValueError, match="^path: .*spacing_mm"):  # was IndexError
        lf.LayerStack.load(bad)


def test_a_move_that_leaves_the_image_is_an_error_not_a_label(small_stack):
    # shift_px=1e30 used to return the bone-free image labelled 1e29 mm
    H = small_stack.shape[1]
    for call in (lambda: lf.synthesize(small_stack, [0, 1], shift_px=1e30),
                 lambda: lf.compose(small_stack, shift_px=float(H + 1))):
        with pytest.raises(ValueError, match="^shift_px: a bone move of"):
            call()
    with pytest.raises(ValueError, match="^jsw_mm: a bone move of"):
        lf.compose(small_stack, jsw_mm=1e6)
    lf.compose(small_stack, shift_px=float(H // 2))  # large but inside: fine
