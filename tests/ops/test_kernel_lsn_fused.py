"""Fused LSN inference kernels (kernels/lsn_fused.py via lsn_fast/fused.py) against their eager references.

The Triton kernels run on CPU through the interpreter (``TRITON_INTERPRET=1`` set before triton is
imported, put back after this module's imports, set again while its tests run). Tolerances:
float32 storage ``atol = rtol = 1e-5`` (GroupNorm statistics are summed in another order than
``F.group_norm``'s); 16-bit storage: the kernel and the reference each round once to the storage
dtype, so ``2 ulp`` of that dtype (``rtol = atol = 2e-2`` bf16, ``4e-3`` fp16).
"""

import dataclasses
import os

import torch

# With a GPU the kernels run compiled on CUDA copies of the inputs; otherwise in the interpreter.
GPU = torch.cuda.is_available() and os.environ.get("LSN_FAST_FORCE_INTERPRET") != "1"
DEVICE = "cuda" if GPU else "cpu"
_PREV_INTERPRET = os.environ.get("TRITON_INTERPRET")
if not GPU:  # checked before TRITON_INTERPRET is touched, so a skip leaves the environment as it was
    import pytest

    from lsn_fast.ops.registry import triton_interpreter_problem

    if _problem := triton_interpreter_problem():
        pytest.skip(_problem, allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

pytest.importorskip("triton")
import hypothesis.strategies as st  # noqa: E402
import torch.nn as nn  # noqa: E402
from hypothesis import assume, given, settings  # noqa: E402

from lsn_fast.model import fused  # noqa: E402


kl = pytest.importorskip("lsn_fast.ops.kernels.lsn_fused")

if _PREV_INTERPRET is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:  # pragma: no cover
    os.environ["TRITON_INTERPRET"] = _PREV_INTERPRET


@pytest.fixture(autouse=True)
def _interpreter():
    if GPU:
        yield
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    if old is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old


TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def _examples(n: int) -> int:
    """Hypothesis examples: all of them in the interpreter; on a GPU each new combination of
    constexprs is a compile (~1 s), and the GPU suite gives this file a few minutes, so fewer."""
    return min(n, 12) if GPU else n


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":  # a non-contiguous view (every other channel of a wider tensor)
        wide = torch.repeat_interleave(x, 2, dim=1)
        return wide[:, ::2]
    return x.contiguous()


@st.composite
def gn_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3, 4]))
    cpg = draw(st.integers(1, 4))
    return dict(
        B=draw(st.integers(1, 3)), groups=groups, C=groups * cpg,
        H=draw(st.sampled_from([1, 2, 3, 5, 8, 13])), W=draw(st.sampled_from([1, 2, 7, 8, 17])),
        dtype=draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16])),
        layout=draw(st.sampled_from(["contiguous", "channels_last", "sliced"])),
        affine=draw(st.booleans()), silu=draw(st.booleans()),
        offset=draw(st.sampled_from([0.0, 3.0, 1e3])),  # a large mean tests the variance's cancellation
        chunk=draw(st.sampled_from([None, 4, 16])), block=draw(st.sampled_from([4, 16, 64])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=_examples(40), deadline=None)
@given(gn_cases())
def test_group_norm_act_matches_reference(c):
    assume(c["H"] * c["W"] * (c["C"] // c["groups"]) > 1)  # F.group_norm (and the API) refuse one value per group
    g = torch.Generator().manual_seed(c["seed"])
    x = (torch.randn(c["B"], c["C"], c["H"], c["W"], generator=g) * 2 + c["offset"]).to(c["dtype"])
    x = _layout(x, c["layout"])
    w = b = None
    if c["affine"]:
        w = torch.randn(c["C"], generator=g).to(c["dtype"])
        b = torch.randn(c["C"], generator=g).to(c["dtype"])
    # Ground truth in float64: torch's own float32 CPU GroupNorm on channels-last input computes the
    # variance as E[x^2] - E[x]^2 (seen: 6e-3 error at mean 1000, std 2), so it is not the yardstick.
    want = fused.group_norm_act_reference(x.double(), c["groups"], None if w is None else w.double(),
                                          None if b is None else b.double(), 1e-5, c["silu"]).to(c["dtype"])
    if c["layout"] == "sliced":
        xin = x.contiguous()  # the API makes a non-flattenable layout contiguous; the launcher needs flat
    else:
        xin = x
    dev = (lambda t: None if t is None else t.to(DEVICE))
    got = kl.group_norm_act_triton(dev(xin), c["groups"], dev(w), dev(b), 1e-5, c["silu"], chunk=c["chunk"],
                                   block=c["block"]).cpu()
    assert got.shape == x.shape and got.dtype == x.dtype
    if c["layout"] == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)
    # Conditioning: (x - mean) loses ~ulp(|x|) / std of relative accuracy in float32 whoever computes
    # it, so both sides carry that error; the bound scales with max|x| / min-group-std and max|w|.
    xf = x.float().reshape(c["B"], c["groups"], -1)
    cond = float(xf.abs().amax() / xf.std(dim=2, unbiased=False).clamp_min(1e-3).amin())
    wmax = 1.0 if w is None else max(1.0, float(w.float().abs().max()))
    tol = TOL[c["dtype"]] + 8 * 2.0**-23 * cond * wmax
    if c["dtype"] != torch.float32 and c["offset"] >= 1e3:
        tol = max(tol, 0.5)  # x itself is quantized at ulp(1e3) = 4-8 in 16 bit: the normalized values are coarse
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


def test_group_norm_act_api_dispatch_and_module_form():
    """Through the public API with an nn.GroupNorm; a non-contiguous input works; grads fall back."""
    torch.manual_seed(0)
    norm = nn.GroupNorm(2, 6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 12, 5, 7)[:, ::2]
    assert not x.is_contiguous()
    with torch.no_grad():
        got = fused.group_norm_act(x.to(DEVICE), norm.to(DEVICE), backend="triton").cpu()
        norm.cpu()
        torch.testing.assert_close(got, torch.nn.functional.silu(norm(x)), atol=1e-5, rtol=1e-5)
    # autograd recording: "auto" takes the differentiable reference, "triton" refuses clearly
    xg = x.clone().requires_grad_(True)
    y = fused.group_norm_act(xg, norm)
    y.sum().backward()
    assert xg.grad is not None
    with pytest.raises(RuntimeError, match="inference-only"):
        fused.group_norm_act(xg, norm, backend="triton")


def test_group_norm_act_bad_input():
    x = torch.randn(2, 6, 4, 4)
    with pytest.raises(ValueError, match="groups"):
        fused.group_norm_act(x, 4)
    with pytest.raises(ValueError, match="x:"):
        fused.group_norm_act(torch.randn(6, 4, 4), 2)
    with pytest.raises(TypeError, match="x:"):
        fused.group_norm_act(x.double(), 2)
    with pytest.raises(ValueError, match="weight"):
        fused.group_norm_act(x, 2, torch.ones(5), torch.zeros(5))
    with pytest.raises(ValueError, match="backend"):
        fused.group_norm_act(x, 2, backend="cuda")
    with pytest.raises(ValueError, match="empty"):
        fused.group_norm_act(torch.randn(0, 6, 4, 4), 2)
    with pytest.raises(ValueError, match="more than one value per group"):
        fused.group_norm_act(torch.randn(2, 6, 1, 1), 6)


@settings(max_examples=_examples(30), deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 3, 8, 13]), st.sampled_from([1, 5, 16, 19]),
       st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), st.sampled_from([4, 6]),
       st.sampled_from(["contiguous", "channels_last", "sliced"]), st.sampled_from([8, 64]),
       st.sampled_from([None, torch.float32, torch.bfloat16]), st.integers(0, 2**31 - 1))
def test_recompose_head_matches_reference(B, H, W, dtype, K, layout, block, corr_dtype, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(B, 1, H, W, generator=g) * 3).to(dtype)
    head = (torch.randn(B, K, H, W, generator=g) * 4).to(dtype)
    head = _layout(head, layout)
    # a correction as large as D itself, so that its relu clips some pixels to zero
    corr = None if corr_dtype is None else (torch.randn(B, 1, H, W, generator=g) * 3).to(corr_dtype)
    want_l, want_d = fused.recompose_head_reference(y, head, corr)
    if layout == "sliced":
        head = head.contiguous()
    got_l, got_d = (t.cpu() for t in kl.recompose_head_triton(
        y.to(DEVICE), head.to(DEVICE), None if corr is None else corr.to(DEVICE), block=block))
    assert got_l.dtype == got_d.dtype == torch.float32
    torch.testing.assert_close(got_d, want_d, atol=1e-6, rtol=1e-6)  # exact ops in fp32 from the same inputs
    torch.testing.assert_close(got_l, want_l, atol=1e-5, rtol=1e-5)
    assert bool((got_l >= 0).all()) and bool((got_d >= 0).all())
    torch.testing.assert_close(got_l.sum(1, keepdim=True), got_d, atol=1e-5, rtol=1e-5)
    if corr is not None:  # the correction really entered: D differs from the uncorrected head's
        plain_d = fused.recompose_head_reference(y, head)[1]
        assert not torch.allclose(got_d, plain_d)


@settings(max_examples=_examples(30), deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 3, 8, 13]), st.sampled_from([1, 5, 16, 19]),
       st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), st.sampled_from([4, 6]),
       st.sampled_from(["contiguous", "channels_last", "sliced"]),
       st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), st.booleans(), st.sampled_from([8, 64]),
       st.integers(0, 2**31 - 1))
def test_refine_input_matches_reference(B, H, W, dtype, K, layout, out_dtype, channels_last, block, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(B, 1, H, W, generator=g) * 3).to(dtype)
    head = _layout((torch.randn(B, K, H, W, generator=g) * 4).to(dtype), layout)
    want = fused.refine_input_reference(y, head, out_dtype)
    if layout == "sliced":
        head = head.contiguous()
    got = kl.refine_input_triton(y.to(DEVICE), head.to(DEVICE), out_dtype, channels_last, block=block).cpu()
    assert got.shape == (B, 5, H, W) and got.dtype == out_dtype
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got.is_contiguous(memory_format=fmt)
    # float32: the same fp32 ops; 16 bit: each side rounds about the same fp32 value once, so at
    # most 1 ulp apart (the interpreter's cast need not round to nearest as torch's does)
    tol = {torch.float32: 1e-6, torch.bfloat16: 8e-3, torch.float16: 1e-3}[out_dtype]
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    # independent of the reference: channel 0 is y, 1 is >= 0, 2-4 are fractions that sum to 1
    # (16 bit: the interpreter's float32 -> bf16 cast may round the other way than torch's: 1 ulp)
    torch.testing.assert_close(got[:, 0:1].float(), y.float(), atol=tol, rtol=tol)
    assert bool((got[:, 1:] >= 0).all())
    torch.testing.assert_close(got[:, 2:].float().sum(1), torch.ones(B, H, W), atol=4 * tol, rtol=0)


def test_recompose_head_api_and_bad_input():
    y = torch.rand(2, 1, 6, 5)
    head = torch.randn(2, 6, 6, 5).transpose(2, 3).contiguous().transpose(2, 3)  # W-major storage
    with torch.no_grad():
        gl, gd = (t.cpu() for t in fused.recompose_head(y.to(DEVICE), head.to(DEVICE), backend="triton"))
    wl, wd = fused.recompose_head_reference(y, head)
    torch.testing.assert_close(gl, wl, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gd, wd)
    with pytest.raises(ValueError, match="y/head"):
        fused.recompose_head(y, torch.randn(2, 3, 6, 5))
    with pytest.raises(ValueError, match="y/head"):
        fused.recompose_head(torch.rand(2, 1, 6, 4), head)
    with pytest.raises(TypeError, match="head"):
        fused.recompose_head(y, head.to(torch.int32))
    with pytest.raises(ValueError, match="correction"):
        fused.recompose_head(y, head, torch.randn(2, 1, 5, 6))
    with pytest.raises(TypeError, match="correction"):
        fused.recompose_head(y, head, torch.zeros(2, 1, 6, 5, dtype=torch.int64))
    # a non-flattenable correction (a transposed view) is copied, not misread
    corr = torch.randn(2, 1, 5, 6).transpose(2, 3)
    with torch.no_grad():
        gl, gd = (t.cpu() for t in fused.recompose_head(y.to(DEVICE), head.to(DEVICE), corr.to(DEVICE),
                                                        backend="triton"))
    wl, wd = fused.recompose_head_reference(y, head, corr)
    torch.testing.assert_close(gd, wd)
    torch.testing.assert_close(gl, wl, atol=1e-5, rtol=1e-5)


def test_refine_input_api_and_bad_input():
    y = torch.rand(2, 1, 6, 5)
    head = torch.randn(2, 6, 6, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = fused.refine_input(y.to(DEVICE), head.to(DEVICE), dtype=torch.bfloat16, backend="triton").cpu()
        ref = fused.refine_input(y, head, dtype=torch.bfloat16, backend="reference")
    # memory format follows head's unless asked; the reference path honours it too
    assert got.is_contiguous(memory_format=torch.channels_last) and ref.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref, atol=8e-3, rtol=8e-3)
    assert fused.refine_input(y, head.contiguous(), backend="reference").is_contiguous()
    with pytest.raises(TypeError, match="dtype"):
        fused.refine_input(y, head, dtype=torch.float64)
    with pytest.raises(ValueError, match="y/head"):
        fused.refine_input(y, torch.randn(2, 3, 6, 5))
    with pytest.raises(ValueError, match="backend"):
        fused.refine_input(y, head, backend="cuda")


def test_fused_lsn_matches_unfused_model(monkeypatch):
    """LSN.fuse() swaps in the kernels without changing the model's output (float32, CPU interpreter)."""
    calls = {"gn": 0, "head": 0}
    gn, head = kl.group_norm_act_triton, kl.recompose_head_triton

    def count_gn(*a, **k):
        calls["gn"] += 1
        return gn(*a, **k)

    def count_head(*a, **k):
        calls["head"] += 1
        return head(*a, **k)

    monkeypatch.setattr(kl, "group_norm_act_triton", count_gn)
    monkeypatch.setattr(kl, "recompose_head_triton", count_head)
    from lsn_fast.model.inference import FastSeparator
    from lsn_fast.model.lsn import LSN

    torch.manual_seed(0)
    model = LSN.tiny().eval()
    for p in model.parameters():  # the zero-initialized head would hide the layer fractions
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 1, 32, 48) * 2
    with torch.no_grad():
        want = model(x)
        got = model.to(DEVICE).fuse()(x.to(DEVICE))
        model.cpu()
        got = type(got)(got.layers.cpu(), got.denoised.cpu(), got.seg_logits.cpu())
    n_res = sum(type(m).__name__ == "ResBlock" for m in model.modules())
    assert calls == {"gn": 2 * n_res + 1, "head": 1}  # the kernels really ran
    assert model.fused and all(m.fused for m in model.modules() if hasattr(m, "fused"))
    for a, b in ((got.layers, want.layers), (got.denoised, want.denoised), (got.seg_logits, want.seg_logits)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
    model.fuse(False)
    assert not any(m.fused for m in model.modules() if hasattr(m, "fused"))
    # the inference runner (CPU: no graph, float32, channels-last) gives the same layers, batch padded
    run = FastSeparator(model, 3, 32, 48, cuda_graph=True)
    out = run(x)
    torch.testing.assert_close(out.layers, want.layers, atol=2e-5, rtol=2e-5)
    with pytest.raises(ValueError, match="images"):
        run(torch.rand(4, 1, 32, 48))
    with pytest.raises(ValueError, match="height/width"):
        FastSeparator(model, 1, 30, 48)


def test_fused_lsn_with_refiner_matches_unfused(monkeypatch):
    """A model with a DenoiseRefiner runs its head as the two kernels around the refiner's
    convolutions (refine_input, then recompose_head with the correction) and gives the unfused outputs."""
    from lsn_fast.model.lsn import LSN, with_refiner

    calls = {"refine_input": 0, "head_corrected": 0}
    ri, head = kl.refine_input_triton, kl.recompose_head_triton

    def count_ri(*a, **k):
        calls["refine_input"] += 1
        return ri(*a, **k)

    def count_head(y, h, correction=None, **k):
        calls["head_corrected"] += correction is not None
        return head(y, h, correction, **k)

    monkeypatch.setattr(kl, "refine_input_triton", count_ri)
    monkeypatch.setattr(kl, "recompose_head_triton", count_head)
    torch.manual_seed(1)
    model = with_refiner(LSN.tiny(), 8, 3).eval()
    for p in model.parameters():  # the zero-initialized last convolutions would hide the refiner
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 1, 32, 32) * 2
    with torch.no_grad():
        want = model(x)
        got = model.to(DEVICE).fuse()(x.to(DEVICE))
        plain = LSN(dataclasses.replace(model.config, refine_channels=0))
    model.fuse(False).cpu()
    assert calls == {"refine_input": 1, "head_corrected": 1}
    torch.testing.assert_close(got.layers.cpu(), want.layers, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(got.denoised.cpu(), want.denoised, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(got.seg_logits.cpu(), want.seg_logits, atol=2e-5, rtol=2e-5)
    # the refiner changed the result (else the check above could not tell a skipped refiner)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("refine.")})
    with torch.no_grad():
        assert (plain(x).denoised - want.denoised).abs().max() > 1e-3


def test_fused_refiner_head_under_autocast_matches_eager():
    """Under bf16 autocast the fused head hands the refiner a bf16 input (what autocast would cast
    to) and gives the eager head's outputs from the same bf16 head output (CPU autocast, interpreter)."""
    from lsn_fast.model.lsn import LSN, with_refiner

    if GPU:
        pytest.skip("CPU autocast check; the GPU suite's benchmark compares the bf16 rows")
    torch.manual_seed(2)
    model = with_refiner(LSN.tiny(), 8, 3).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 1, 32, 32) * 2
    out = (torch.randn(2, 6, 32, 32) * 2).to(torch.bfloat16)  # what the head conv returns under autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model._eager_head(x, out)
        got = model._fused_head(x, out)
    assert got.layers.dtype == want.layers.dtype == torch.float32
    # The interpreter casts float32 -> bf16 by truncation (seen: every value equals its truncation;
    # compiled Triton rounds to nearest, as autocast does), so about half the refiner's inputs are
    # 1 ulp off autocast's and the refiner's bf16 output moves by about its own ulp.
    for a, b in ((got.denoised, want.denoised), (got.layers, want.layers), (got.seg_logits, want.seg_logits)):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=1e-2)
    # Exact, given that cast: the eager refiner on the truncated reference input, then the eager head.
    x5 = fused.refine_input_reference(x, out).contiguous()
    x5 = (x5.view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)  # truncate to bf16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        corr = model.refine.net(x5)
    want_l, want_d = fused.recompose_head_reference(x, out, corr)
    torch.testing.assert_close(got.denoised, want_d, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.layers, want_l, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ normalize-activate-convolve
@st.composite
def conv_cases(draw):
    # > 64 channels: several input-channel tiles (the kernel's K loop) and output-channel tiles
    cin = draw(st.sampled_from([1, 4, 5, 12, 16, 24, 72]))
    groups = draw(st.sampled_from([g for g in (1, 2, 4) if cin % g == 0]))
    return dict(
        B=draw(st.integers(1, 2)), cin=cin, cout=draw(st.sampled_from([1, 6, 12, 16, 17, 80])), groups=groups,
        H=draw(st.sampled_from([1, 2, 5, 8])), W=draw(st.sampled_from([1, 3, 7, 16])),
        dtype=draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16])),
        layout=draw(st.sampled_from(["contiguous", "channels_last", "sliced"])),
        norm=draw(st.booleans()), silu=draw(st.booleans()), res=draw(st.booleans()), bias=draw(st.booleans()),
        up=draw(st.booleans()),
        block_p=draw(st.sampled_from([16, 64])), seed=draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=_examples(40), deadline=None)
@given(conv_cases())
def test_conv3x3_act_matches_reference(c):
    assume(not c["norm"] or c["H"] * c["W"] * (c["cin"] // c["groups"]) > 1)
    g = torch.Generator().manual_seed(c["seed"])
    x = _layout((torch.randn(c["B"], c["cin"], c["H"], c["W"], generator=g) * 2 + 1).to(c["dtype"]), c["layout"])
    conv = nn.Conv2d(c["cin"], c["cout"], 3, padding=1, bias=c["bias"])
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
    norm = None
    if c["norm"]:
        norm = nn.GroupNorm(c["groups"], c["cin"])
        with torch.no_grad():
            norm.weight.copy_(torch.rand(c["cin"], generator=g) + 0.5)
            norm.bias.copy_(torch.randn(c["cin"], generator=g) * 0.5)
    k = 2 if c["up"] else 1
    res = torch.randn(c["B"], c["cout"], k * c["H"], k * c["W"], generator=g).to(c["dtype"]) if c["res"] else None
    with torch.no_grad():
        want = fused.conv3x3_act_reference(x, conv.weight, conv.bias, norm=norm, silu=c["silu"], residual=res,
                                           upsample=c["up"])
        # the reference itself against the modules it stands for, in float64 (16 bit: the
        # reference rounds the activation to x's dtype first, as eager autocast does, so 2 ulp)
        a = x.double()
        if norm is not None:
            a = norm.double()(a)
            norm.float()
        a = torch.nn.functional.silu(a) if c["silu"] else a
        a = torch.nn.functional.interpolate(a, scale_factor=2.0, mode="nearest") if c["up"] else a
        mod = torch.nn.functional.conv2d(a, conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                                         padding=1) + (0 if res is None else res.double())
        tol = TOL[c["dtype"]] * 2
        torch.testing.assert_close(want.double(), mod, atol=tol * (1 + float(mod.abs().max())), rtol=tol)
        dev = (lambda t: None if t is None else t.to(DEVICE))
        xin = x.contiguous() if c["layout"] == "sliced" else x
        scale = shift = None
        if norm is not None:
            scale, shift = kl.gn_scale_shift_triton(dev(xin), c["groups"], dev(norm.weight), dev(norm.bias), norm.eps)
        w9, b = fused._padded_weights(dev(conv.weight), dev(conv.bias), c["dtype"])
        cl = c["layout"] == "channels_last"
        got = kl.conv3x3_triton(dev(xin), w9, b, c["cout"], scale, shift, c["silu"], dev(res), cl,
                                upsample=c["up"], block_p=c["block_p"]).cpu()
    assert got.shape == want.shape and got.dtype == c["dtype"]
    assert got.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    # float32: the same products summed in another order; 16 bit: each side rounds the
    # activation and the output once (1 ulp each, the interpreter's casts truncate)
    scale_mag = 1.0 + float(want.float().abs().max())
    tol = 1e-5 if c["dtype"] == torch.float32 else 2 * TOL[c["dtype"]]
    torch.testing.assert_close(got.float(), want.float(), atol=tol * scale_mag, rtol=tol)


def test_conv3x3_act_api_and_bad_input():
    torch.manual_seed(3)
    x = torch.randn(2, 8, 6, 7)
    conv = nn.Conv2d(8, 4, 3, padding=1)
    norm = nn.GroupNorm(2, 8)
    with torch.no_grad():
        got = fused.conv3x3_act(x.to(DEVICE), conv.weight.to(DEVICE), conv.bias.to(DEVICE), norm=norm.to(DEVICE),
                                silu=True, backend="triton").cpu()
        norm.cpu(), conv.cpu()
        want = conv(torch.nn.functional.silu(norm(x)))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the weights are cached per tensor; an in-place update is seen
    with torch.no_grad():
        conv.weight.mul_(2)
        got2 = fused.conv3x3_act(x.to(DEVICE), conv.weight.to(DEVICE), None, backend="triton").cpu()
        torch.testing.assert_close(got2, torch.nn.functional.conv2d(x, conv.weight, padding=1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="weight"):
        fused.conv3x3_act(x, torch.randn(4, 8, 1, 1))
    with pytest.raises(ValueError, match="bias"):
        fused.conv3x3_act(x, conv.weight, torch.zeros(5))
    with pytest.raises(ValueError, match="norm"):
        fused.conv3x3_act(x, conv.weight, norm=nn.GroupNorm(2, 6))
    with pytest.raises(ValueError, match="residual"):
        fused.conv3x3_act(x, conv.weight, residual=torch.zeros(2, 8, 6, 7))
    with pytest.raises(TypeError, match="x:"):
        fused.conv3x3_act(x.double(), conv.weight)
    with pytest.raises(TypeError, match="residual"):
        fused.conv3x3_act(x, conv.weight, residual=torch.zeros(2, 4, 6, 7, dtype=torch.int32))
    with pytest.raises(ValueError, match="residual"):  # with upsample the output (and residual) is 2H x 2W
        fused.conv3x3_act(x, conv.weight, residual=torch.zeros(2, 4, 6, 7), upsample=True)
    with pytest.raises(ValueError, match="backend"):
        fused.conv3x3_act(x, conv.weight, backend="cudnn")


@pytest.mark.parametrize("refine", [False, True])
def test_fused_convs_lsn_matches_unfused(refine):
    """LSN.fuse(convs=True): every ResBlock, the head, the decoder's upsampling convolutions and the
    refiner run the fused convolutions
    (counted) and the outputs equal the eager model's (float32, interpreter)."""
    from lsn_fast.model.inference import FastSeparator
    from lsn_fast.model.lsn import LSN, with_refiner

    torch.manual_seed(4)
    model = LSN.tiny()
    if refine:
        model = with_refiner(model, 8, 3)
    model.eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 1, 32, 32) * 2
    calls = {"n": 0}
    conv = kl.conv3x3_triton

    def count(*a, **k):
        calls["n"] += 1
        return conv(*a, **k)

    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(kl, "conv3x3_triton", count)
        want = model(x)
        got = model.to(DEVICE).fuse(convs=True)(x.to(DEVICE))
    n_res = sum(type(m).__name__ == "ResBlock" for m in model.modules())
    assert calls["n"] == 2 * n_res + 1 + model.config.depth + (3 if refine else 0)
    for a, b in ((got.layers, want.layers), (got.denoised, want.denoised), (got.seg_logits, want.seg_logits)):
        torch.testing.assert_close(a.cpu(), b, atol=5e-5, rtol=5e-5)
    with pytest.raises(ValueError, match="convs"):
        model.fuse(False, convs=True)
    model.fuse(False).cpu()
    assert not any(getattr(m, "fused_convs", False) for m in model.modules())
    run = FastSeparator(model, 2, 32, 32, fused_convs=True)  # CPU: channels-last, no graph
    torch.testing.assert_close(run(x).layers, want.layers, atol=5e-5, rtol=5e-5)
    with pytest.raises(ValueError, match="fused_convs"):
        FastSeparator(model, 2, 32, 32, fused=False, fused_convs=True)


@pytest.mark.parametrize("convs", [False, True])
def test_fused_lsn_float32_tail_under_bf16(convs):
    """LSN.set_float32_tail with the fused kernels under bf16 autocast: the head, refine_input,
    the refiner's (fused) convolutions and recompose_head get float32 tensors, and the outputs
    match the unfused model's with the same tail to bf16's 2 ulp (the fused GroupNorm+SiLU
    kernels round the U-Net's activations at other points than eager autocast does)."""
    from lsn_fast.model.lsn import LSN, with_refiner

    torch.manual_seed(5)
    model = with_refiner(LSN.tiny(), 8, 3).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    model.set_float32_tail(True)
    x = torch.rand(2, 1, 32, 32) * 2
    seen = []

    def run(m, dev):
        with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16):
            return m(x.to(dev))

    want = run(model, "cpu")
    model.to(DEVICE).fuse(convs=convs)
    if convs:
        conv = kl.conv3x3_triton

        def spy(xx, *a, **k):
            seen.append(xx.dtype)
            return conv(xx, *a, **k)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kl, "conv3x3_triton", spy)
            got = run(model, DEVICE)
        # the U-Net's convolutions run in bf16, the head's and the refiner's 3 in float32
        assert seen.count(torch.float32) == 4 and torch.bfloat16 in seen
    else:
        got = run(model, DEVICE)
    model.fuse(False).cpu()
    for a, b in ((got.layers, want.layers), (got.denoised, want.denoised)):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.cpu(), b, atol=2e-2, rtol=2e-2)
