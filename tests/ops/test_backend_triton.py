"""The ``triton`` backend (kernels/synthesize.py + lsn_fast/_triton_backend.py) against the reference.

Without a GPU the Triton kernels run on CPU tensors through the Triton interpreter
(``TRITON_INTERPRET=1``, set before triton is imported: ``triton.jit`` picks the interpreter when
it decorates). The variable is put back as it was once this module is imported, and set again (and
the ``triton`` backend re-registered for CPU tensors) only while this module's tests run, so other
test modules keep their ``backend="auto"`` choice. Images are tiny (the interpreter is slow).
With a GPU (and ``LSN_FAST_FORCE_INTERPRET`` unset) the same tests run the *compiled* kernels on
CUDA copies of the inputs (a strided view arrives there contiguous) against the CPU reference.

Tolerances are those of docs/kernel_contract.md: float32 storage and output
``|a-b| <= 1e-5 |b| + 1e-5``; with Poisson noise a floor() may flip by one count where float
rounding differs (at most 0.1% of pixels, each within one count, 2/q in attenuation); 16-bit
storage or output ``<= 1e-2`` relative.
"""

import os

import torch

# On a machine with a GPU the kernels run compiled on CUDA tensors (inputs are moved there and the
# results back, the reference stays on the CPU); elsewhere through the interpreter on the CPU.
GPU = torch.cuda.is_available() and os.environ.get("LSN_FAST_FORCE_INTERPRET") != "1"
DEVICE = "cuda" if GPU else "cpu"
_PREV_INTERPRET = os.environ.get("TRITON_INTERPRET")
if not GPU:  # checked before TRITON_INTERPRET is touched, so a skip leaves the environment as it was
    import pytest

    from lsn_fast.ops.registry import triton_interpreter_problem

    if _problem := triton_interpreter_problem():
        pytest.skip(_problem, allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"

import contextlib  # noqa: E402

import pytest  # noqa: E402

triton = pytest.importorskip("triton")
import hypothesis.strategies as st  # noqa: E402
import triton.language as tl  # noqa: E402
from hypothesis import given, settings  # noqa: E402

import lsn_fast as lf  # noqa: E402
from lsn_fast.ops import registry  # noqa: E402
from lsn_fast.physics.philox import philox4x32  # noqa: E402
from lsn_fast.physics.reference import _resample_axis, synthesize_reference  # noqa: E402


ks = pytest.importorskip("lsn_fast.ops.kernels.synthesize")
from lsn_fast.ops.backends.triton import synthesize_triton  # noqa: E402
from lsn_fast.ops.kernels.synthesize import _philox4x32_10  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _interpreter_backend():
    """TRITON_INTERPRET=1 and the triton backend offered on CPU, for this module's tests only."""
    if GPU:
        yield
        return
    old_env = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    old_spec = registry._REGISTRY.get("triton")
    registry.register_backend("triton", ("cuda", "cpu"), 30, registry._load_triton, "fused Triton kernels (kernels/)")
    yield
    if old_spec is not None:
        registry.register_backend(old_spec.name, old_spec.devices, old_spec.priority, old_spec.loader, old_spec.doc)
    if old_env is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old_env


SMALL_CAPS = {"plain": (4, 8, 1), "blur": (8, 16, 1), "wide": (16, 16, 1)}


@contextlib.contextmanager
def block_caps(caps):
    """Shrink the kernel's blocks so tiny images still get several tiles (and the persistent loop)."""
    old = dict(ks.BLOCK_CAPS)
    if caps is not None:
        ks.BLOCK_CAPS.update(caps)
    try:
        yield
    finally:
        ks.BLOCK_CAPS.clear()
        ks.BLOCK_CAPS.update(old)


# ------------------------------------------------------------------------------- helpers
def synthesize_dev(*args, **kw):
    """``synthesize_triton`` on DEVICE (tensor arguments moved there), result back on the CPU."""
    def mv(v):
        return v.to(DEVICE) if isinstance(v, torch.Tensor) else v

    return synthesize_triton(*(mv(a) for a in args), **{k: mv(v) for k, v in kw.items()}).cpu()


from helpers import assert_case_matches, assert_matches, backend_cases, make_bank, run_against_reference  # noqa: E402


@st.composite
def cases(draw):
    c = draw(backend_cases(heights=(1, 2, 3, 5, 8, 13, 16, 21, 24), widths=(1, 2, 3, 7, 8, 16, 17, 24),
                           blurs=(0.0, 0.4, 0.6, 1.3, 6.0)))  # blur 6: the unfused wide-blur path
    c["caps"] = draw(st.sampled_from([None, SMALL_CAPS]))
    return c


def run_both(c):
    with block_caps(c["caps"]):
        return run_against_reference(synthesize_dev, c)


# ------------------------------------------------------------------------------- Philox
@triton.jit
def _philox_kat_kernel(out_ptr, c_ptr, k0, k1, N: tl.constexpr):
    i = tl.arange(0, N)
    c0 = tl.load(c_ptr + 4 * i).to(tl.uint32)
    c1 = tl.load(c_ptr + 4 * i + 1).to(tl.uint32)
    c2 = tl.load(c_ptr + 4 * i + 2).to(tl.uint32)
    c3 = tl.load(c_ptr + 4 * i + 3).to(tl.uint32)
    r0, r1, r2, r3 = _philox4x32_10(c0, c1, c2, c3, k0.to(tl.uint32), k1.to(tl.uint32))
    tl.store(out_ptr + 4 * i, r0.to(tl.int64))
    tl.store(out_ptr + 4 * i + 1, r1.to(tl.int64))
    tl.store(out_ptr + 4 * i + 2, r2.to(tl.int64))
    tl.store(out_ptr + 4 * i + 3, r3.to(tl.int64))


# every @triton.jit of this module is decorated now: put the variable back (see the docstring)
if _PREV_INTERPRET is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _PREV_INTERPRET


def _philox_triton(counters, key):
    c = torch.tensor(counters, dtype=torch.int64).reshape(-1, 4)
    n = c.shape[0]
    npad = triton.next_power_of_2(n)
    c = torch.cat([c, c[:1].expand(npad - n, 4)]).contiguous().to(DEVICE)
    out = torch.empty_like(c)
    _philox_kat_kernel[(1,)](out, c, key[0], key[1], N=npad)
    return (out[:n].cpu() & 0xFFFFFFFF).tolist()


@pytest.mark.parametrize(
    "ctr,key,expected",
    [  # Random123 known-answer vectors for philox4x32_10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)
def test_philox_known_answers(ctr, key, expected):
    assert tuple(_philox_triton([ctr], key)[0]) == expected


def test_philox_matches_torch_reference_on_random_counters():
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2**32, (16, 4), generator=g, dtype=torch.int64)
    key = (0xDEADBEEF, 0x12345678)
    ref = philox4x32(c[:, 0], c[:, 1], c[:, 2], c[:, 3], key[0], key[1])
    ref = torch.stack(ref, dim=1).tolist()
    assert _philox_triton(c.tolist(), key) == ref


def test_backend_is_registered_under_the_interpreter():
    assert lf.backends()["triton"] is True
    name, fn = registry.resolve("synthesize", DEVICE, "triton")
    assert name == "triton" and fn is synthesize_triton


# ------------------------------------------------------------------- reference comparison
@settings(max_examples=int(os.environ.get("LSN_TRITON_EXAMPLES", "25")))
@given(c=cases())
def test_matches_reference(c):
    assert_case_matches(c, *run_both(c))


@pytest.mark.parametrize("noise_mode", [0, 1, 2])
@pytest.mark.parametrize("output_mode", [0, 1])
def test_every_noise_mode_fused_blur_several_tiles(noise_mode, output_mode):
    """Realistic dose, fused blur with several tiles and the persistent loop; strict 0.1% rule."""
    gen = torch.Generator().manual_seed(noise_mode * 2 + output_mode)
    soft, upper, lower = make_bank(2, 24, 21, torch.float32, "contiguous", gen)
    B = 3
    index = torch.tensor([1, 0, 1])
    disp = torch.randn(B, 2, generator=gen) * 4
    params = torch.tensor([[1e4, 0.0, 5.0, 0.6, 2.0], [3e3, 0.0, 5.0, 1.3, 0.0], [20.0, 0.0, 5.0, 0.0, 1.0]])
    kw = dict(seed=99, sample_index=torch.arange(B) + 5, noise_mode=noise_mode, output_mode=output_mode, interp="cubic")
    ref = synthesize_reference(soft, upper, lower, index, disp, params, **kw)
    for caps in (None, SMALL_CAPS):
        with block_caps(caps):
            out = synthesize_dev(soft, upper, lower, index, disp, params, **kw)
        assert_matches(out, ref, params=params, noise_mode=noise_mode, output_mode=output_mode, sixteen_bit=False)


@pytest.mark.parametrize("case", ["scatter", "wide_blur", "scatter_and_wide_blur"])
def test_multi_pass_paths(case):
    gen = torch.Generator().manual_seed(7)
    soft, upper, lower = make_bank(2, 19, 22, torch.float32, "strided", gen)
    index = torch.tensor([1, 1])
    disp = torch.tensor([[0.5, -2.25], [-1.0, 3.5]])
    scatter = 0.0 if case == "wide_blur" else 0.1
    blur = 0.6 if case == "scatter" else 6.0
    params = torch.tensor([[2e3, scatter, 4.0, blur, 2.0], [500.0, 0.0, 2.0, 0.4, 1.0]])
    for noise_mode in (1, 2):
        kw = dict(seed=3, sample_index=torch.tensor([0, 2**35]), noise_mode=noise_mode, interp="linear")
        out = synthesize_dev(soft, upper, lower, index, disp, params, **kw)
        ref = synthesize_reference(soft, upper, lower, index, disp, params, **kw)
        assert_matches(out, ref, params=params, noise_mode=noise_mode, output_mode=0, sixteen_bit=False)


def test_noise_keyed_by_sample_index_not_batch():
    gen = torch.Generator().manual_seed(3)
    soft, upper, lower = make_bank(4, 12, 10, torch.float32, "contiguous", gen)
    index = torch.tensor([0, 3, 1, 2])
    disp = torch.randn(4, 2, generator=gen)
    params = torch.tensor([[500.0, 0.0, 1.0, 0.6, 2.0]] * 4)
    si = torch.tensor([10, 2**33 + 1, 7, 123456])
    full = synthesize_dev(soft, upper, lower, index, disp, params, seed=5, sample_index=si)
    for k in (1, 3):
        one = synthesize_dev(soft, upper, lower, index[k : k + 1], disp[k : k + 1], params[k : k + 1], seed=5, sample_index=si[k : k + 1])
        assert torch.equal(one[0], full[k])


def test_zero_and_integer_shifts_are_exact():
    gen = torch.Generator().manual_seed(5)
    soft, upper, lower = make_bank(1, 9, 11, torch.float32, "contiguous", gen)
    idx = torch.tensor([0])
    for interp in ("linear", "cubic"):
        z = synthesize_dev(soft, upper, lower, idx, torch.zeros(1, 2), None, interp=interp)
        assert torch.equal(z[0, 0], (soft[0] + upper[0]) + lower[0])
        s = synthesize_dev(soft, upper, lower, idx, torch.tensor([[2.0, -1.0]]), None, interp=interp)
        moved = upper[0][torch.clamp(torch.arange(9) - 2, 0, 8)][:, torch.clamp(torch.arange(11) + 1, 0, 10)]
        assert torch.equal(s[0, 0], (soft[0] + moved) + lower[0])


@pytest.mark.parametrize("storage", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_16bit_error_at_most_twice_eager(storage, interp):
    """flash-attention's rule: error vs a float64 computation <= ~2x the eager error in the same precision."""
    gen = torch.Generator().manual_seed(11)
    soft, upper, lower = make_bank(2, 16, 20, storage, "contiguous", gen)
    index = torch.tensor([0, 1, 1])
    disp = torch.tensor([[0.37, -1.5], [2.0, 0.81], [-0.5, -0.25]])
    s, u, l = (t.index_select(0, index).to(torch.float64) for t in (soft, upper, lower))
    u = _resample_axis(_resample_axis(u, -disp[:, 0], 1, interp), -disp[:, 1], 2, interp)
    truth = (s + u + l).unsqueeze(1)
    kw = dict(interp=interp, out_dtype=storage)
    out = synthesize_dev(soft, upper, lower, index, disp, None, **kw).double()
    eager = synthesize_reference(soft, upper, lower, index, disp, None, **kw).double()
    assert float((out - truth).abs().max()) <= 2.0 * float((eager - truth).abs().max()) + 1e-6


# ------------------------------------------------------------------------------- public API
def _rect_bank(B=2, H=24, W=20, dtype=torch.float32):
    from helpers import rect_stack

    return rect_stack(B=B, H=H, W=W, gap_px=6.0, dtype=dtype)


@pytest.mark.parametrize("detector", [None, lf.Detector(), lf.Detector(noise="gaussian", n0=3e3, output="counts")])
def test_public_compose_matches_reference(detector):
    bank = _rect_bank()
    kw = dict(shift_px=torch.tensor([1.5, -0.75]), detector=detector, seed=3)
    a = lf.compose(bank.to(DEVICE), backend="triton", **kw).cpu()
    b = lf.compose(bank, backend="reference", **kw)
    params = None if detector is None else detector.params(2)
    assert_matches(a, b, params=params, noise_mode=0 if detector is None else detector.noise_mode,
                   output_mode=0 if detector is None else detector.output_mode, sixteen_bit=False)


def test_public_compose_16bit_and_synthesize():
    det = lf.Detector(n0=5e3)
    bank16 = _rect_bank(dtype=torch.bfloat16)
    a = lf.compose(bank16.to(DEVICE), jsw_mm=1.0, detector=det, backend="triton", out_dtype=torch.float16).cpu()
    b = lf.compose(bank16, jsw_mm=1.0, detector=det, backend="reference", out_dtype=torch.float16)
    assert_matches(a, b, params=det.params(2), noise_mode=2, output_mode=0, sixteen_bit=True)
    bank = _rect_bank(B=3)
    index = torch.tensor([2, 0, 2])
    kw = dict(shift_px=torch.tensor([0.5, -1.25, 2.0]), detector=det, seed=11, interp="cubic", sample_index=torch.tensor([4, 5, 6]))
    a, ja = lf.synthesize(bank.to(DEVICE), index.to(DEVICE), backend="triton",
                          **{k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
    a, ja = a.cpu(), ja.cpu()
    b, jb = lf.synthesize(bank, index, backend="reference", **kw)
    assert torch.equal(ja, jb)
    assert_matches(a, b, params=det.params(3), noise_mode=2, output_mode=0, sixteen_bit=False)


def test_stream_integer_moves_match_reference():
    """``JSWStream(moves="integer")`` on the triton backend: whole-pixel moves of either bone (and of
    both, moved in PyTorch before the fused pass) give the reference backend's images."""
    from lsn_fast.synthesis.stream import JSWStream, bank_from_phantoms

    bank = bank_from_phantoms(4, size=32, spacing_mm=0.25, seed=2, dtype=torch.float32, progress=False).to(DEVICE)
    for bone in ("random", "both"):
        kw = dict(jsw_mm=(0.3, 2.0), bone=bone, moves="integer", seed=3)
        a, ja, ia = JSWStream(bank, 6, backend="triton", **kw).generate(torch.arange(6))
        b, jb, ib = JSWStream(bank, 6, backend="reference", **kw).generate(torch.arange(6))
        assert torch.equal(ja, jb) and torch.equal(ia["disp_px"], ib["disp_px"])
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-6, rtol=0)


def test_interpreter_guard_names_the_bad_version_pair():
    # Triton < 3.7's interpreter calls int() on 1-element arrays, a TypeError from NumPy 2.4 on
    # (triton-lang/triton#9171): seen with Triton 3.6 + NumPy 2.4.6, every launch failed
    msg = registry.triton_interpreter_problem("3.6.0", "2.4.6")
    assert msg and "3.6.0" in msg and "2.4.6" in msg and "numpy<2.4" in msg and "triton>=3.7" in msg
    assert registry.triton_interpreter_problem("3.6.0", "2.3.5") is None
    assert registry.triton_interpreter_problem("3.7.0", "2.4.6") is None
    assert registry.triton_interpreter_problem("3.10.1", "2.5.0rc1") is None
    assert registry.triton_interpreter_problem("3.5.1+git1234", "2.4.0") is not None
