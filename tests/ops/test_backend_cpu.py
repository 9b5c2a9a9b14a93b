"""The ``cpu`` backend (csrc/cpu/synthesize.cpp + lsn_fast/_cpu_backend.py) against the reference.

Tolerances are those of docs/kernel_contract.md: float32 storage and output
``|a-b| <= 1e-5 |b| + 1e-5``; with Poisson noise a floor() may flip by one count where float
rounding differs (at most 0.1% of pixels, each within one count, 2/q in attenuation); 16-bit
storage or output ``<= 1e-2`` relative.
"""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import lsn_fast as lf
from lsn_fast.physics.reference import synthesize_reference

cpu_backend = pytest.importorskip("lsn_fast.ops.backends.cpu")
from lsn_fast import _C  # noqa: E402

synthesize_cpu = cpu_backend.synthesize_cpu


# ------------------------------------------------------------------------------- helpers
from helpers import assert_case_matches, assert_matches, backend_cases, make_bank, run_against_reference  # noqa: E402


def cases():
    return backend_cases(heights=(1, 2, 3, 5, 8, 13, 16, 21), widths=(1, 2, 3, 7, 8, 16, 17, 33))


def run_both(c):
    return run_against_reference(synthesize_cpu, c)


# ------------------------------------------------------------------------------- Philox
@pytest.mark.parametrize(
    "ctr,key,expected",
    [  # Random123 known-answer vectors for philox4x32_10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)
def test_philox_known_answers(ctr, key, expected):
    assert tuple(_C.philox4x32(ctr, key)) == expected


def test_backend_is_registered():
    assert lf.backends()["cpu"] is True
    assert _C.synthesize_isa() in ("avx512", "avx2", "base")


# ------------------------------------------------------------------- reference comparison
@settings(max_examples=150)
@given(c=cases())
def test_matches_reference(c):
    assert_case_matches(c, *run_both(c))


@pytest.mark.parametrize("noise_mode", [0, 1, 2])
@pytest.mark.parametrize("output_mode", [0, 1])
def test_large_image_every_noise_mode(noise_mode, output_mode):
    """Realistic sizes and dose; B=1 < threads exercises the row-parallel path. Strict 0.1% rule."""
    gen = torch.Generator().manual_seed(noise_mode * 2 + output_mode)
    soft, upper, lower = make_bank(2, 130, 97, torch.float32, "contiguous", gen)
    for B in (1, 3):
        index = torch.randint(0, 2, (B,), generator=gen)
        disp = torch.randn(B, 2, generator=gen) * 4
        params = torch.tensor([[1e4, 0.05, 5.0, 0.6, 2.0]] * B)
        kw = dict(seed=99, sample_index=torch.arange(B) + 5, noise_mode=noise_mode, output_mode=output_mode, interp="cubic")
        out = synthesize_cpu(soft, upper, lower, index, disp, params, **kw)
        ref = synthesize_reference(soft, upper, lower, index, disp, params, **kw)
        assert_matches(out, ref, params=params, noise_mode=noise_mode, output_mode=output_mode, sixteen_bit=False)


def test_noise_keyed_by_sample_index_not_batch():
    gen = torch.Generator().manual_seed(3)
    soft, upper, lower = make_bank(4, 20, 24, torch.float32, "contiguous", gen)
    index = torch.tensor([0, 3, 1, 2])
    disp = torch.randn(4, 2, generator=gen)
    params = torch.tensor([[500.0, 0.0, 1.0, 0.6, 2.0]] * 4)
    si = torch.tensor([10, 2**33 + 1, 7, 123456])
    full = synthesize_cpu(soft, upper, lower, index, disp, params, seed=5, sample_index=si)
    for k in range(4):
        one = synthesize_cpu(soft, upper, lower, index[k : k + 1], disp[k : k + 1], params[k : k + 1], seed=5, sample_index=si[k : k + 1])
        assert torch.equal(one[0], full[k])


def test_thread_count_does_not_change_results():
    gen = torch.Generator().manual_seed(4)
    soft, upper, lower = make_bank(2, 64, 48, torch.float32, "contiguous", gen)
    index, disp = torch.tensor([1]), torch.tensor([[1.3, -0.4]])
    params = torch.tensor([[2e3, 0.1, 4.0, 0.8, 1.0]])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = synthesize_cpu(soft, upper, lower, index, disp, params, seed=1)
        torch.set_num_threads(2)
        b = synthesize_cpu(soft, upper, lower, index, disp, params, seed=1)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a, b)


def test_zero_and_integer_shifts_are_exact():
    gen = torch.Generator().manual_seed(5)
    soft, upper, lower = make_bank(1, 9, 11, torch.float32, "contiguous", gen)
    idx = torch.tensor([0])
    for interp in ("linear", "cubic"):
        z = synthesize_cpu(soft, upper, lower, idx, torch.zeros(1, 2), None, interp=interp)
        assert torch.equal(z[0, 0], (soft[0] + upper[0]) + lower[0])
        s = synthesize_cpu(soft, upper, lower, idx, torch.tensor([[2.0, -1.0]]), None, interp=interp)
        moved = upper[0][torch.clamp(torch.arange(9) - 2, 0, 8)][:, torch.clamp(torch.arange(11) + 1, 0, 10)]
        assert torch.equal(s[0, 0], (soft[0] + moved) + lower[0])


def test_wrapper_guards_raw_pointers():
    soft = torch.rand(2, 4, 4)
    with pytest.raises(ValueError):
        synthesize_cpu(soft, soft, soft, torch.tensor([2]), torch.zeros(1, 2), None)
    with pytest.raises(ValueError):
        synthesize_cpu(soft, soft, soft[:, :3], torch.tensor([0]), torch.zeros(1, 2), None)
    with pytest.raises(ValueError):
        synthesize_cpu(soft, soft, soft, torch.tensor([0]), torch.zeros(2, 2), None)


# ------------------------------------------------------------------------------- public API
def _rect_bank(B=3, H=40, W=36, dtype=torch.float32):
    from helpers import rect_stack

    return rect_stack(B=B, H=H, W=W, gap_px=8.0, dtype=dtype)


@pytest.mark.parametrize("detector", [None, lf.Detector(), lf.Detector(noise="gaussian", n0=3e3, scatter=0.05, scatter_sigma_px=4.0, output="counts")])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_public_synthesize_matches_reference(detector, interp):
    bank = _rect_bank()
    index = torch.tensor([2, 0, 2, 1])
    shift = torch.tensor([0.5, -1.25, 3.0, 0.0])
    kw = dict(shift_px=shift, detector=detector, seed=11, interp=interp, sample_index=torch.tensor([4, 5, 6, 7]))
    a, ja = lf.synthesize(bank, index, backend="cpu", **kw)
    b, jb = lf.synthesize(bank, index, backend="reference", **kw)
    assert torch.equal(ja, jb)
    params = None if detector is None else detector.params(4)
    assert_matches(a, b, params=params, noise_mode=0 if detector is None else detector.noise_mode,
                   output_mode=0 if detector is None else detector.output_mode, sixteen_bit=False)


def test_public_compose_matches_reference_and_16bit():
    bank = _rect_bank(B=2)
    det = lf.Detector(n0=5e3)
    a = lf.compose(bank, shift_px=1.5, detector=det, seed=3, backend="cpu")
    b = lf.compose(bank, shift_px=1.5, detector=det, seed=3, backend="reference")
    assert_matches(a, b, params=det.params(2), noise_mode=2, output_mode=0, sixteen_bit=False)
    bank16 = _rect_bank(B=2, dtype=torch.bfloat16)
    a = lf.compose(bank16, jsw_mm=1.0, detector=det, backend="cpu", out_dtype=torch.float16)
    b = lf.compose(bank16, jsw_mm=1.0, detector=det, backend="reference", out_dtype=torch.float16)
    assert_matches(a, b, params=det.params(2), noise_mode=2, output_mode=0, sixteen_bit=True)


def test_gradient_through_cpu_backend_equals_reference():
    bank = _rect_bank(B=2)
    grads = {}
    for backend in ("cpu", "reference"):
        shift = torch.tensor([0.7, -0.3], requires_grad=True)
        soft = bank.soft.clone().requires_grad_(True)
        stack = lf.LayerStack(soft, bank.upper, bank.lower, bank.spacing_mm, axis=(-1.0, 0.0))
        out = lf.compose(stack, shift_px=shift, detector=lf.Detector(noise="none", electronic_sigma=0.0), backend=backend)
        (out * torch.linspace(0, 1, out.numel()).view_as(out)).sum().backward()
        grads[backend] = (shift.grad.clone(), soft.grad.clone())
    torch.testing.assert_close(grads["cpu"][0], grads["reference"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads["cpu"][1], grads["reference"][1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------- vector math and SIMD Philox, per ISA
# The kernel's own float32 exp / log / sincos and row Philox, called through test hooks for every
# instruction set this CPU can run (AVX-512, AVX2, baseline), against float64 torch and
# lsn_fast.philox.
ISAS = _C._usable_isas()
F32 = torch.finfo(torch.float32)


def _vmath(fn, isa, x):
    x = torch.as_tensor(x, dtype=torch.float32).contiguous()
    o1, o2 = torch.empty_like(x), torch.empty_like(x)
    _C._test_vmath(fn, isa, x.data_ptr(), o1.data_ptr(), o2.data_ptr(), x.numel())
    return o1, o2


def _ulp_err(got, exact):
    """|got - exact| in units of the float32 spacing at the exact value (float64 exact)."""
    e = exact.abs().clamp_min(F32.tiny)
    spacing = torch.exp2(torch.floor(torch.log2(e)) - 23)
    return (got.double() - exact).abs() / spacing


EXP_EDGES = [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 0.5, 88.0, 88.72, 88.7228, 88.73, 89.0, 1e4, -87.3, -87.34,
             -103.0, -103.97, -103.98, -104.0, -1e4, 0.34657359, -0.34657359]


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60)
@given(xs=st.lists(st.floats(-110.0, 95.0, allow_nan=False, width=32), min_size=1, max_size=70))
def test_vmath_exp(isa, xs):
    x = torch.tensor(xs + EXP_EDGES, dtype=torch.float32)
    got, _ = _vmath("exp", isa, x)
    exact = torch.exp(x.double())
    normal = (exact >= F32.tiny) & (exact <= F32.max)
    assert bool((_ulp_err(got, exact)[normal] <= 1.0).all()), f"exp: {float(_ulp_err(got, exact)[normal].max())} ulp"
    # vs torch's float32 exp (itself within 1 ulp): at most 1 ulp apart
    assert bool((_ulp_err(got, torch.exp(x).double())[normal] <= 1.0).all())
    assert bool((got[exact > F32.max] == float("inf")).all())
    assert bool((got[exact < 2.0**-150] == 0.0).all())
    sub = (exact < F32.tiny) & (exact >= 2.0**-149)  # subnormal results: within one subnormal step
    assert bool(((got.double() - exact).abs()[sub] <= 2.0**-149).all())
    assert float(got[x == 0.0][0]) == 1.0


@pytest.mark.parametrize("isa", ISAS)
def test_vmath_exp_mostly_correctly_rounded(isa):
    """Poisson floor() flips against the reference come from exp disagreeing with torch's in the last
    bit: the kernel's exp must round correctly almost always (torch's SLEEF expf: ~99 %)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-87.0, 88.0, 400_001), -10.0 * torch.rand(200_000, generator=gen)])
    got, _ = _vmath("exp", isa, x)
    exact = torch.exp(x.double()).float()
    assert float((got == exact).double().mean()) >= 0.97
    assert float((got == torch.exp(x)).double().mean()) >= 0.96


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60)
@given(xs=st.lists(st.floats(F32.tiny, F32.max, allow_nan=False, allow_infinity=False, width=32), min_size=1,
                   max_size=70),
       us=st.lists(st.floats(2.0**-25, 1.0, exclude_max=True, width=32), min_size=1, max_size=70))
def test_vmath_log(isa, xs, us):
    edges = [F32.tiny, F32.max, 1.0, 2.0, 0.5, 0.70710677, 0.70710683, 1.0 - 2.0**-24, 1.0 + 2.0**-23, 2.0**-25,
             1e-4, 1e4, 0.5 / 1e4, 3.0e38]
    x = torch.tensor(xs + us + edges, dtype=torch.float32)
    got, _ = _vmath("log", isa, x)
    exact = torch.log(x.double())
    # relative to the result where it is not tiny; near x = 1 (result -> 0) absolute in ulp(1)
    err = torch.minimum(_ulp_err(got, exact), (got.double() - exact).abs() / 2.0**-24)
    assert bool((err <= 1.0).all()), f"log: {float(err.max())} ulp at {float(x[err.argmax()])}"
    err_torch = torch.minimum(_ulp_err(got, torch.log(x).double()), (got - torch.log(x)).double().abs() / 2.0**-24)
    assert bool((err_torch <= 2.0).all())
    assert float(got[x == 1.0][0]) == 0.0


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60)
@given(xs=st.lists(st.floats(0.0, 6.2831854820251465, width=32), min_size=1, max_size=70))  # float32(2 pi)
def test_vmath_sincos(isa, xs):
    edges = [0.0, math.pi / 4, math.pi / 2, math.pi, 1.5 * math.pi, 2 * math.pi, 6.2831855, 1e-7, 3.1415925,
             3.1415927]
    x = torch.tensor(xs + edges, dtype=torch.float32)
    s, c = _vmath("sincos", isa, x)
    xd = x.double()
    # absolute error: Box-Muller multiplies by rho, so absolute accuracy is what the noise needs
    assert float((s.double() - torch.sin(xd)).abs().max()) <= 1.2e-7
    assert float((c.double() - torch.cos(xd)).abs().max()) <= 1.2e-7
    assert float((s - torch.sin(x)).abs().max()) <= 1.8e-7
    assert float((c - torch.cos(x)).abs().max()) <= 1.8e-7
    assert float(s[x == 0.0][0]) == 0.0 and float(c[x == 0.0][0]) == 1.0


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=40)
@given(n=st.sampled_from([0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257]),
       pix0=st.one_of(st.integers(0, 2**20), st.integers(2**32 - 300, 2**32 - 1)),
       sidx=st.integers(0, 2**64 - 1), seed=st.integers(0, 2**64 - 1))
def test_simd_philox_matches_reference(isa, n, pix0, sidx, seed):
    from lsn_fast.physics import philox as ph

    u0, u1 = torch.full((n + 1,), -1.0), torch.full((n + 1,), -1.0)
    c1, c2 = sidx & 0xFFFFFFFF, sidx >> 32
    _C._test_philox_uniforms(isa, pix0, n, c1, c2, seed, u0.data_ptr(), u1.data_ptr())
    assert float(u0[n]) == -1.0 and float(u1[n]) == -1.0  # nothing written past n
    pix = (torch.arange(n, dtype=torch.int64) + pix0) & 0xFFFFFFFF
    r0, r1, _, _ = ph.philox4x32(pix, torch.full_like(pix, c1), torch.full_like(pix, c2), torch.zeros_like(pix),
                                 *ph.split_seed(seed))
    assert torch.equal(u0[:n], ph.uint32_to_uniform(r0))
    assert torch.equal(u1[:n], ph.uint32_to_uniform(r1))


_ISA_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
sys.path.insert(0, {tests!r} + '/..')
from lsn_fast import _C
from lsn_fast.ops.backends.cpu import synthesize_cpu
from test_backend_cpu import make_bank
assert _C.synthesize_isa() == {isa!r}, _C.synthesize_isa()
gen = torch.Generator().manual_seed(0)
soft, upper, lower = make_bank(2, 37, 83, torch.float32, "contiguous", gen)
outs = []
for nm in (1, 2):
    params = torch.tensor([[3e3, 0.0, 1.0, 0.6, 0.0], [20.0, 0.1, 3.0, 1.3, 2.0], [1e4, 0.0, 1.0, 0.0, 0.5]])
    outs.append(synthesize_cpu(soft, upper, lower, torch.tensor([1, 0, 1]), torch.tensor([[0.3, -1.7], [2.5, 0.25], [-4.0, 3.1]]),
                               params, seed=7, sample_index=torch.tensor([3, 2**35, 9]), noise_mode=nm, interp="cubic"))
torch.save(outs, {path!r})
"""


def test_every_isa_computes_the_same_bits(tmp_path):
    """No FMA contraction, same polynomials, same Philox words: the image does not depend on the ISA."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    results = {}
    for isa in ISAS:
        path = str(tmp_path / f"{isa}.pt")
        code = _ISA_SCRIPT.format(root=root, tests=os.path.dirname(os.path.abspath(__file__)), isa=isa, path=path)
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, LSN_FAST_CPU_ISA=isa))
        results[isa] = torch.load(path)
    base = results["base"]
    for isa, outs in results.items():
        for a, b in zip(outs, base):
            assert torch.equal(a, b), f"{isa} differs from base: max {float((a - b).abs().max())}"
