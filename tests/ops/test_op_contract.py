"""The op contract (issue 32): one schema validates every route to a kernel; bad input is a named
error on every backend, the raw ``torch.ops.lsn_fast.synthesize`` op included; NaN propagates as in
the reference; nothing crashes the process or returns unwritten memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lsn_fast as lf
from lsn_fast.ops.schema import SynthesizeArgumentError, prepare

BACKENDS = [b for b in ("reference", "cpu", "triton") if lf.backends().get(b)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bank(n=3, h=12, w=10, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.rand(n, h, w, generator=g).to(dtype) * 0.3 for _ in range(3)]


def _params(b, n0=1e4, scatter=0.0, ssig=25.0, blur=0.6, esig=0.0):
    return torch.tensor([[n0, scatter, ssig, blur, esig]] * b, dtype=torch.float32)


def _raw(layers, index, disp, params, *, seed=0, backend="cpu", noise=2, output=0, interp=0, min_counts=0.5,
         out_dtype=torch.float32, sample_index=None):
    b = index.shape[0]
    si = torch.arange(b) if sample_index is None else sample_index
    return torch.ops.lsn_fast.synthesize(*layers, index, disp, params, si, False, seed, noise, output, interp,
                                         min_counts, out_dtype, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [3, 2**40, -(2**40), -1])
def test_raw_op_rejects_out_of_range_index(backend, bad):
    layers = _bank()
    with pytest.raises(ValueError, match=r"^index: values must lie in \[0, 3\)"):
        _raw(layers, torch.tensor([0, bad]), torch.zeros(2, 2), _params(2), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("blur", [7e8, 1e9, 3e9, float("inf"), float("nan"), -1.0])
def test_raw_op_rejects_absurd_blur(backend, blur):
    with pytest.raises(ValueError, match="^params"):
        _raw(_bank(), torch.tensor([0]), torch.zeros(1, 2), _params(1, blur=blur), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n0", [0.0, -5.0, float("nan")])
def test_raw_op_rejects_bad_dose(backend, n0):
    with pytest.raises(ValueError, match=r"^params"):
        _raw(_bank(), torch.tensor([0]), torch.zeros(1, 2), _params(1, n0=n0), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_op_rejects_nonfinite_disp_and_bad_modes(backend):
    layers = _bank()
    with pytest.raises(ValueError, match="^disp"):
        _raw(layers, torch.tensor([0]), torch.tensor([[float("nan"), 0.0]]), _params(1), backend=backend)
    with pytest.raises(ValueError, match="^disp"):
        _raw(layers, torch.tensor([0]), torch.tensor([[1e30, 0.0]]), None, backend=backend)
    with pytest.raises(ValueError, match="^noise_mode"):
        _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1), noise=7, backend=backend)
    with pytest.raises(ValueError, match="^interp"):
        _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1), interp=5, backend=backend)
    with pytest.raises(ValueError, match="^min_counts"):
        _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1), min_counts=float("nan"), backend=backend)
    with pytest.raises(ValueError, match="^sample_index"):
        _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1), sample_index=torch.tensor([-3]), backend=backend)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_nan_layers_give_nan_as_the_reference(backend):
    layers = _bank()
    layers[1][0, 5, 4] = float("nan")
    idx, disp = torch.tensor([0, 1]), torch.tensor([[0.0, 0.0], [0.5, 0.25]])
    for noise in (0, 1, 2):
        ref = _raw(layers, idx, disp, _params(2), noise=noise, backend="reference")
        out = _raw(layers, idx, disp, _params(2), noise=noise, backend=backend)
        # NaN in, NaN out: where the NaN pixel reaches (the reference also spreads it through its
        # zero-weight interpolation taps, so its NaN set may be larger), never clamped away
        assert bool(torch.isnan(out[0, 0, 5, 4])), noise
        assert not bool((torch.isnan(out) & ~torch.isnan(ref)).any()), noise
        assert not bool(torch.isnan(out[1]).any())
        torch.testing.assert_close(out[1], ref[1], rtol=2e-3, atol=2e-2)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_tiny_min_counts_match_the_reference(backend):
    # n0·exp(-att) below min_counts = 1e-30: a subnormal exp (att 100) or one that underflows to 0
    # (att 150) -> the clamp -> -log(1e-30 / 1e12) = 96.709; the C++ log used to mishandle the
    # subnormal quotient (88.03); att 40 stays above the clamp (40 exactly)
    for att, want in ((100.0, 96.709), (150.0, 96.709), (40.0, 40.0)):
        layers = [torch.full((1, 8, 8), att), torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)]
        ref = _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1, n0=1e12, blur=0.0), noise=0,
                   min_counts=1e-30, backend="reference")
        out = _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1, n0=1e12, blur=0.0), noise=0,
                   min_counts=1e-30, backend=backend)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-3)
        assert abs(float(ref.mean()) - want) < 0.01, (att, float(ref.mean()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_rule_is_the_same_everywhere(backend):
    layers = _bank()
    a = _raw(layers, torch.tensor([0]), torch.zeros(1, 2), _params(1), seed=-1, backend=backend)  # 2**64 - 1
    det = lf.Detector()
    st_ = lf.LayerStack(*layers, 0.1, axis=(-1.0, 0.0), validate=False)
    b = lf.compose(st_[0:1], detector=det, seed=2**64 - 1, backend=backend)
    assert a.shape == b.shape
    for bad in (2**64, 2**70, -(2**63) - 1):
        with pytest.raises(ValueError, match="^seed"):
            prepare(*layers, torch.tensor([0]), torch.zeros(1, 2), _params(1), seed=bad)
        with pytest.raises((ValueError, RuntimeError), match="seed"):
            lf.compose(st_[0:1], detector=det, seed=bad, backend=backend)


def test_mixed_dtype_bank_is_computed_in_float32_on_every_backend():
    layers = _bank()
    mixed = [layers[0].to(torch.float16), layers[1], layers[2].to(torch.float64)]
    a = prepare(*mixed, torch.tensor([0]), torch.zeros(1, 2), None)
    assert {a.soft.dtype, a.upper.dtype, a.lower.dtype} == {torch.float32}
    outs = [_raw(mixed, torch.tensor([0, 2]), torch.tensor([[0.3, 0.1], [1.0, -0.5]]), None, backend=b) for b in BACKENDS]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-6)


def test_wrong_types_are_type_errors():
    layers = _bank()
    with pytest.raises(TypeError, match="^index"):
        prepare(*layers, torch.tensor([0.0]), torch.zeros(1, 2), None)
    with pytest.raises(TypeError, match="^seed"):
        prepare(*layers, torch.tensor([0]), torch.zeros(1, 2), None, seed=1.5)
    with pytest.raises(SynthesizeArgumentError, match="^soft, upper, lower"):
        prepare(layers[0], layers[1][:, :5], layers[2], torch.tensor([0]), torch.zeros(1, 2), None)


# ---------------------------------------------------------------- fuzz of the raw op, out of process
_FUZZ = textwrap.dedent(r"""
    import json, sys, torch
    sys.path.insert(0, {root!r})
    import lsn_fast as lf
    cases = json.loads(sys.stdin.read())
    g = torch.Generator().manual_seed(0)
    L = [torch.rand(3, 9, 7, generator=g) * 0.3 for _ in range(3)]
    for c in cases:
        idx = torch.tensor(c["index"], dtype=torch.int64)
        b = idx.shape[0]
        disp = torch.tensor(c["disp"], dtype=torch.float32).reshape(b, 2)
        params = None if c["params"] is None else torch.tensor([c["params"]] * b, dtype=torch.float32)
        try:
            out = torch.ops.lsn_fast.synthesize(*L, idx, disp, params, torch.arange(b), False, c["seed"], c["noise"],
                                                c["output"], 0, c["min_counts"], torch.float32, c["backend"])
        except (ValueError, TypeError) as e:
            continue
        ref = torch.ops.lsn_fast.synthesize(*L, idx, disp, params, torch.arange(b), False, c["seed"], c["noise"],
                                            c["output"], 0, c["min_counts"], torch.float32, "reference")
        assert not bool((torch.isnan(out) & ~torch.isnan(ref)).any()), c
        assert bool(torch.isfinite(out).all()) == bool(torch.isfinite(ref).all()), c
    print("ok", len(cases))
""")

_huge = st.sampled_from([0.0, 1.0, -1.0, 3.0, 2.0**40, -(2.0**40), 1e30, float("nan"), float("inf"), 7e8])


@settings(max_examples=8, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "index": st.lists(st.sampled_from([0, 1, 2, 3, -1, 2**40, -(2**40), 2**62]), min_size=1, max_size=3),
    "disp": st.just(None),
    "params": st.one_of(st.none(), st.lists(_huge, min_size=5, max_size=5)),
    "seed": st.sampled_from([0, 7, -1, 2**63 - 1]),
    "noise": st.sampled_from([0, 1, 2, 3, -1]),
    "output": st.sampled_from([0, 1, 2]),
    "min_counts": st.sampled_from([0.5, 1e-30, 0.0, -1.0, float("nan")]),
    "backend": st.sampled_from(BACKENDS),
    "dv": st.lists(_huge, min_size=2, max_size=2),
}), min_size=4, max_size=12))
def test_fuzz_raw_op_never_crashes(cases):
    import json
    import math

    for c in cases:
        c["disp"] = [c["dv"]] * len(c["index"])
        del c["dv"]
    payload = json.dumps(cases, allow_nan=True)
    r = subprocess.run([sys.executable, "-c", _FUZZ.format(root=ROOT)], input=payload, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ))
    assert r.returncode == 0, f"the raw op crashed or disagreed (exit {r.returncode}):\n{r.stderr[-3000:]}"
    assert r.stdout.strip().startswith("ok"), r.stdout
    assert not math.isnan(0.0)
