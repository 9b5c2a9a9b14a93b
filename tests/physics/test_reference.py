"""The physics reference: translation invariants, Philox, noise statistics, detector chain."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import lsn_fast as lf
from lsn_fast.physics.philox import detector_normals, philox4x32
from lsn_fast.physics.reference import gaussian_blur, poisson_from_normal, synthesize_reference, translate


# ------------------------------------------------------------------------------- Philox
@pytest.mark.parametrize(
    "ctr,key,expected",
    [  # Random123 known-answer vectors for philox4x32_10 (kat_vectors in Random123 1.09)
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)
def test_philox_known_answers(ctr, key, expected):
    c = [torch.tensor([v], dtype=torch.int64) for v in ctr]
    out = philox4x32(*c, key[0], key[1])
    assert tuple(int(o) for o in out) == expected


def test_normals_are_standard_and_independent():
    z1, z2, u2 = detector_normals(1234, torch.arange(8), 64, 64)
    for z in (z1, z2):
        assert abs(float(z.mean())) < 0.01
        assert abs(float(z.std()) - 1.0) < 0.01
        # kurtosis of a normal is 3
        assert abs(float((z**4).mean()) - 3.0) < 0.1
    assert abs(float((z1 * z2).mean())) < 0.01
    assert 0.0 < float(u2.min()) and float(u2.max()) < 1.0
    assert abs(float(u2.mean()) - 0.5) < 0.01


@settings(max_examples=20)
@given(seed=st.integers(0, 2**64 - 1), idx=st.lists(st.integers(0, 2**40), min_size=1, max_size=5, unique=True))
def test_noise_depends_only_on_seed_index_pixel(seed, idx):
    si = torch.tensor(idx, dtype=torch.int64)
    a = detector_normals(seed, si, 5, 7)[0]
    perm = torch.randperm(len(idx))
    b = detector_normals(seed, si[perm], 5, 7)[0]
    assert torch.equal(a[perm], b)
    single = detector_normals(seed, si[:1], 5, 7)[0]
    assert torch.equal(single[0], a[0])


# ------------------------------------------------------------------------- translation
layers = st.integers(1, 3).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(1, 17), st.integers(1, 19))
)


@settings(max_examples=30)
@given(shape=layers, interp=st.sampled_from(["linear", "cubic"]), seed=st.integers(0, 1000))
def test_zero_shift_is_identity_bit_for_bit(shape, interp, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    out = translate(x, torch.zeros(shape[0], 2), interp)
    assert torch.equal(out, x)


@settings(max_examples=30)
@given(a=st.integers(0, 6), b=st.integers(0, 6), c=st.integers(-5, 0), d=st.integers(-5, 0),
       interp=st.sampled_from(["linear", "cubic"]))
def test_integer_shifts_compose_exactly(a, b, c, d, interp):
    g = torch.Generator().manual_seed(a * 7 + b)
    x = torch.rand(2, 21, 23, generator=g)
    d1 = torch.tensor([[a, c], [b, d]], dtype=torch.float32)
    d2 = torch.tensor([[b, d], [a, c]], dtype=torch.float32)
    two = translate(translate(x, d1, interp), d2, interp)
    one = translate(x, d1 + d2, interp)
    assert torch.equal(two, one)
    # an integer shift is an exact copy of the shifted content
    assert torch.equal(one[0, a + b :, : 23 + c + d], x[0, : 21 - a - b, -(c + d) :])


def _blob(B, H, W, cy, cx, r=4.0):
    """A smooth compact blob (support radius r px) far from the borders."""
    y = torch.arange(H, dtype=torch.float64).view(H, 1) + 0.5
    x = torch.arange(W, dtype=torch.float64).view(1, W) + 0.5
    d2 = ((y - cy) ** 2 + (x - cx) ** 2) / r**2
    return torch.clamp(1 - d2, min=0).pow(2).expand(B, H, W).contiguous()


def _centroid(x):
    H, W = x.shape[-2:]
    yy = torch.arange(H, dtype=x.dtype).view(H, 1) + 0.5
    xx = torch.arange(W, dtype=x.dtype).view(1, W) + 0.5
    m = x.sum(dim=(-1, -2))
    return (x * yy).sum(dim=(-1, -2)) / m, (x * xx).sum(dim=(-1, -2)) / m


@settings(max_examples=40)
@given(dy=st.floats(-6, 6), dx=st.floats(-6, 6), interp=st.sampled_from(["linear", "cubic"]))
def test_subpixel_shift_moves_sum_and_centroid_exactly(dy, dx, interp):
    x = _blob(1, 32, 34, 16.3, 17.1).to(torch.float32)
    out = translate(x, torch.tensor([[dy, dx]]), interp).double()
    x = x.double()
    assert abs(float(out.sum() - x.sum())) <= 1e-5 * float(x.sum())
    cy0, cx0 = _centroid(x)
    cy1, cx1 = _centroid(out)
    assert abs(float(cy1 - cy0) - dy) < 1e-4
    assert abs(float(cx1 - cx0) - dx) < 1e-4


def test_translate_matches_grid_sample_border_bilinear():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 13, 17, generator=g)
    disp = torch.tensor([[0.3, -1.7], [-2.6, 0.25], [15.0, -20.0]])
    out = translate(x, disp, "linear")
    B, H, W = x.shape
    ys = (torch.arange(H) + 0.5).view(1, H, 1) - disp[:, 0].view(B, 1, 1)
    xs = (torch.arange(W) + 0.5).view(1, 1, W) - disp[:, 1].view(B, 1, 1)
    xs, ys = torch.broadcast_tensors(xs, ys)
    grid = torch.stack([(xs / W) * 2 - 1, (ys / H) * 2 - 1], dim=-1)
    ref = torch.nn.functional.grid_sample(x[:, None], grid.expand(B, H, W, 2), mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
    assert torch.allclose(out, ref, atol=1e-5)


def test_translate_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 7, generator=g, dtype=torch.float64)
    for interp in ("linear", "cubic"):
        d = torch.tensor([[0.3, -0.6], [1.2, 0.45]], dtype=torch.float64, requires_grad=True)
        xx = x.clone().requires_grad_(True)
        f = lambda a, b: translate(a, b, interp).double()  # noqa: E731
        # translate computes in float32 by design; gradcheck with float32-appropriate tolerances
        assert torch.autograd.gradcheck(f, (xx, d), eps=1e-3, atol=5e-3, rtol=5e-3)


# ------------------------------------------------------------------------ detector chain
def test_more_attenuation_never_more_counts():
    a = torch.linspace(0, 6, 200).view(1, 1, 200).expand(2, 3, 200).contiguous()
    params = lf.Detector(n0=5e3, blur_sigma_px=0.0, electronic_sigma=0.0, noise="none", output="counts").params(2)
    q = synthesize_reference(a, torch.zeros_like(a), torch.zeros_like(a), torch.arange(2), torch.zeros(2, 2), params, noise_mode=0, output_mode=1)
    assert bool((q[..., 1:] <= q[..., :-1]).all())


@settings(max_examples=15)
@given(a1=st.floats(0, 5), extra=st.floats(0, 3), n0=st.floats(10, 1e5), sigma=st.floats(0, 2), spr=st.floats(0, 0.3))
def test_expected_counts_monotone_in_attenuation(a1, extra, n0, sigma, spr):
    """Adding attenuation anywhere never increases expected counts anywhere (noise off)."""
    g = torch.Generator().manual_seed(int(n0) % 97)
    base = a1 * torch.rand(1, 9, 11, generator=g)
    more = base + extra * torch.rand(1, 9, 11, generator=g)
    det = lf.Detector(n0=n0, noise="none", blur_sigma_px=sigma, electronic_sigma=0.0, scatter=spr, scatter_sigma_px=3.0, output="counts")
    z = torch.zeros(1, 9, 11)
    q0 = synthesize_reference(base, z, z, torch.arange(1), torch.zeros(1, 2), det.params(1), noise_mode=0, output_mode=1)
    q1 = synthesize_reference(more, z, z, torch.arange(1), torch.zeros(1, 2), det.params(1), noise_mode=0, output_mode=1)
    assert bool((q1 <= q0 * (1 + 1e-6)).all())


@pytest.mark.parametrize("lam", [0.7, 4.0, 11.5, 12.5, 40.0, 300.0])
def test_poisson_statistics(lam):
    z1, _, u2 = detector_normals(99, torch.arange(16), 128, 128)
    k = poisson_from_normal(torch.full_like(z1, lam), z1, u2).double()
    n = k.numel()
    mean, var = float(k.mean()), float(k.var())
    skew = float(((k - mean) ** 3).mean()) / var**1.5
    se_mean = math.sqrt(lam / n)
    assert abs(mean - lam) < 5 * se_mean + 0.01 * (lam >= 12)
    assert abs(var / lam - 1) < 0.02 + 5 * math.sqrt(2 / n)
    assert abs(skew - 1 / math.sqrt(lam)) < 0.05
    assert torch.equal(k, torch.round(k)) and float(k.min()) >= 0
    if lam < 12:  # exact inversion: compare the pmf at 0 with exp(-lam)
        assert abs(float((k == 0).double().mean()) - math.exp(-lam)) < 5 * math.sqrt(math.exp(-lam) / n) + 1e-4


def test_gaussian_noise_statistics_in_counts():
    a = torch.full((4, 64, 64), 1.0)
    det = lf.Detector(n0=2e4, noise="gaussian", blur_sigma_px=0.0, electronic_sigma=0.0, output="counts")
    z = torch.zeros_like(a)
    q = synthesize_reference(a, z, z, torch.arange(4), torch.zeros(4, 2), det.params(4), noise_mode=1, output_mode=1)
    lam = 2e4 * math.exp(-1.0)
    n = q.numel()
    assert abs(float(q.mean()) - lam) < 5 * math.sqrt(lam / n)  # 5 standard errors
    assert abs(float(q.var()) / lam - 1) < 5 * math.sqrt(2 / n)


def test_blur_correlates_noise_and_reduces_variance():
    a = torch.full((2, 64, 64), 0.5)
    z = torch.zeros_like(a)
    out = {}
    for s in (0.0, 1.0):
        det = lf.Detector(n0=1e4, noise="gaussian", blur_sigma_px=s, electronic_sigma=0.0, output="counts")
        q = synthesize_reference(a, z, z, torch.arange(2), torch.zeros(2, 2), det.params(2), noise_mode=1, output_mode=1)[:, 0]
        r = q - q.mean()
        out[s] = (float(r.var()), float((r[:, :, 1:] * r[:, :, :-1]).mean() / r.var()))
    assert out[1.0][0] < 0.5 * out[0.0][0]
    assert abs(out[0.0][1]) < 0.03 and out[1.0][1] > 0.5


def test_gaussian_blur_preserves_constants_and_mass():
    x = torch.full((2, 10, 12), 3.0)
    assert torch.allclose(gaussian_blur(x, torch.tensor([0.7, 2.5])), x)
    y = _blob(1, 40, 40, 20, 20).float()
    b = gaussian_blur(y, torch.tensor([1.5]))
    assert abs(float(b.sum() / y.sum()) - 1) < 1e-5


def test_electronic_noise_level():
    a = torch.full((2, 64, 64), 0.2)
    z = torch.zeros_like(a)
    det = lf.Detector(n0=1e4, noise="none", blur_sigma_px=0.0, electronic_sigma=7.0, output="counts")
    q = synthesize_reference(a, z, z, torch.arange(2), torch.zeros(2, 2), det.params(2), noise_mode=0, output_mode=1)
    assert abs(float(q.std()) - 7.0) < 0.2


def test_attenuation_output_is_minus_log():
    a = torch.rand(2, 9, 9)
    z = torch.zeros_like(a)
    det = lf.Detector(n0=1e4, noise="none", blur_sigma_px=0.0, electronic_sigma=0.0)
    y = synthesize_reference(a, z, z, torch.arange(2), torch.zeros(2, 2), det.params(2), noise_mode=0, output_mode=0)[:, 0]
    assert torch.allclose(y, a, atol=1e-5)


def test_reference_gradcheck_layers_and_shift():
    g = torch.Generator().manual_seed(1)
    s, u, l = (0.3 * torch.rand(2, 6, 5, generator=g, dtype=torch.float64) for _ in range(3))
    params = lf.Detector(n0=1e3, noise="gaussian", blur_sigma_px=0.8, electronic_sigma=1.0).params(2)

    def f(s, u, l, d):
        return synthesize_reference(s, u, l, torch.arange(2), d, params, noise_mode=1).double()

    d = torch.tensor([[0.3, 0.1], [-0.7, 0.2]], dtype=torch.float64)
    args = [t.clone().requires_grad_(True) for t in (s, u, l, d)]
    assert torch.autograd.gradcheck(f, args, eps=1e-3, atol=2e-2, rtol=2e-2)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 2.0), st.lists(st.floats(0.0, 4.0), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_blur_of_a_sample_does_not_depend_on_its_batch(sigma, others, seed):
    """A sample's blurred image is bit-identical alone and beside samples with wider kernels
    (the padded zero taps and the normalizer must not change its last bit)."""
    from lsn_fast.physics.reference import gaussian_blur, gaussian_weights

    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1 + len(others), 9, 13, generator=g) * 1e4
    sig = torch.tensor([sigma, *others], dtype=torch.float32)
    w1, r1 = gaussian_weights(sig[:1])
    wb, rb = gaussian_weights(sig)
    assert torch.equal(wb[0, rb - r1: rb + r1 + 1], w1[0])
    assert torch.equal(wb[0, : rb - r1], torch.zeros(rb - r1)) and torch.equal(wb[0, rb + r1 + 1:], torch.zeros(rb - r1))
    assert torch.equal(gaussian_blur(img[:1], sig[:1])[0], gaussian_blur(img, sig)[0])
