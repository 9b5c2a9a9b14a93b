"""One render path and one moves vocabulary (issue 32): ``synthesize``, ``compose``, ``JSWStream``
and the five-percent ``Synthesizer`` all render through :func:`lsn_fast.synthesis.render.render`,
and all name a move with ``bone`` / ``moves`` / ``interp`` of :mod:`lsn_fast.physics.moves`."""

from __future__ import annotations

import os
import re
import warnings

import pytest
import torch

import lsn_fast as lf
import lsn_fast.synthesis.render as render_mod
from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer
from lsn_fast.physics.moves import check_moves, whole_pixel_copy
from lsn_fast.synthesis.stream import JSWStream

PKG = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "lsn_fast")


@pytest.fixture(scope="module")
def phantom():
    return lf.phantom.generate(4, size=48, spacing_mm=0.2, seed=3, tilt_deg=(-8.0, 8.0))


def test_every_renderer_calls_the_op_through_render(phantom, monkeypatch):
    st, info = phantom
    calls = []
    real = render_mod.synthesize_op

    def spy(*a):
        calls.append(a[7])  # move_lower
        return real(*a)

    monkeypatch.setattr(render_mod, "synthesize_op", spy)
    entries = {
        "synthesize": lambda: lf.synthesize(st, torch.arange(4), jsw_mm=1.0, detector=lf.Detector()),
        "compose": lambda: lf.compose(st, shift_px=1.0, bone="lower"),
        "JSWStream": lambda: JSWStream(st, 4, jsw_mm=(0.3, 2.0), detector=lf.Detector(), bone="both").generate([0, 1]),
        "Synthesizer": lambda: Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny()).jsw_batch(
            3, torch.Generator().manual_seed(0)),
        "Synthesizer (re-posed)": lambda: Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), rotate_deg=5.0).jsw_batch(
            3, torch.Generator().manual_seed(0)),
    }
    for name, fn in entries.items():
        n = len(calls)
        fn()
        assert len(calls) > n, f"{name} did not render through lsn_fast.synthesis.render.render"
    assert True in calls  # the lower bone alone is the op's moving layer


def test_no_module_but_render_calls_the_op():
    """The op is called in one place outside ``ops/``: a second caller would be a second
    vocabulary of its arguments (the six copies issue 32 found)."""
    pat = re.compile(r"synthesize_op\(|torch\.ops\.lsn_fast\.synthesize\(")
    callers = []
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, PKG)
            if f.endswith(".py") and not rel.startswith("ops" + os.sep) and pat.search(open(path).read()):
                callers.append(rel)
    assert callers == [os.path.join("synthesis", "render.py")], callers


def test_moves_have_one_vocabulary_across_entries(phantom):
    """``moves`` / ``interp`` mean the same in synthesize, JSWStream, LayerStack.shifted and the
    Synthesizer; the five-percent words "linear" / "cubic" still read, with a DeprecationWarning,
    as sub-pixel moves with that interpolation."""
    st, info = phantom
    cfg = FivePercentConfig.tiny()
    for bad in ("nearest", "Integer", None):
        for make in (lambda m: Synthesizer(st, info["jsw_mm"], cfg, moves=m),
                     lambda m: JSWStream(st, 2, moves=m),
                     lambda m: lf.synthesize(st, 0, jsw_mm=1.0, moves=m),
                     lambda m: st.shifted(1.0, moves=m)):
            with pytest.raises(ValueError, match="moves"):
                make(bad)
    with pytest.raises(ValueError, match="interp"):
        Synthesizer(st, info["jsw_mm"], cfg, interp="nearest")
    with pytest.raises(ValueError, match="moves, interp"):
        check_moves("linear", "cubic")
    with pytest.warns(DeprecationWarning, match="subpixel"):
        old = Synthesizer(st, info["jsw_mm"], cfg, moves="cubic")
    assert (old.moves, old.interp) == ("subpixel", "cubic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = Synthesizer(st, info["jsw_mm"], cfg, moves="subpixel", interp="cubic")
        assert (new.moves, new.interp) == ("subpixel", "cubic")
        assert (JSWStream(st, 2, moves="integer").moves, FivePercentConfig.tiny().moves) == ("integer", "subpixel")
    a = old.jsw_batch(3, torch.Generator().manual_seed(2))
    b = new.jsw_batch(3, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_layerstack_shifted_integer_moves_are_whole_pixel_copies(phantom):
    st, _ = phantom
    shift = torch.tensor([2.4, -1.6, 0.3, 3.5])
    ax = st.resolved_axis()
    d = torch.round(shift[:, None] * ax)
    up = st.shifted(shift, moves="integer")
    assert torch.equal(up.upper, whole_pixel_copy(st.upper, d)) and torch.equal(up.lower, st.lower)
    low = st.shifted(shift, bone="lower", moves="integer")
    assert torch.equal(low.lower, whole_pixel_copy(st.lower, -d)) and torch.equal(low.upper, st.upper)
    sub = st.shifted(shift)  # sub-pixel: not a copy of any whole-pixel move
    assert not torch.equal(sub.upper, up.upper)


@pytest.mark.parametrize("moves", ["subpixel", "integer"])
@pytest.mark.parametrize("bone", ["upper", "both"])
def test_synthesizer_fused_and_layer_paths_agree(phantom, moves, bone):
    """The Synthesizer's two ways into ``render`` (the fused op moving the bone, and layers moved
    first for layer supervision, rendered unmoved) give the same images for the same draws:
    whole-pixel moves exactly, sub-pixel moves within float32 rounding."""
    st, info = phantom
    img = lf.compose(st, detector=lf.Detector(n0=3e3), seed=5)
    syn = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), images=img, moves=moves, bone=bone)
    x, t = syn.jsw_batch(6, torch.Generator().manual_seed(7))
    x2, t2, bones, _ = syn.jsw_layer_batch(6, torch.Generator().manual_seed(7))
    assert torch.equal(t, t2)
    tol = 0.0 if moves == "integer" else 2e-5
    torch.testing.assert_close(x, x2, rtol=tol, atol=tol)
    assert bones.shape == (6, 2, 48, 48)


def test_synthesize_and_compose_render_the_same_move(phantom):
    """A stack is a bank: ``compose(stack[i], shift)`` and ``synthesize(stack, i, shift_px=shift)``
    are one computation, bit for bit, for every bone."""
    st, _ = phantom
    det = lf.Detector(n0=2e3, blur_sigma_px=0.7)
    for bone in ("upper", "lower", "both"):
        a = lf.compose(st, shift_px=1.3, detector=det, seed=11, bone=bone, interp="cubic")
        b, _ = lf.synthesize(st, torch.arange(4), shift_px=1.3, detector=det, seed=11, bone=bone, interp="cubic")
        assert torch.equal(a, b), bone
