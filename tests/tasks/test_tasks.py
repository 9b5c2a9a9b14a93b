"""Downstream tasks (issue 6): metrics against hand-computed values, SvdH grading, the POC JSN
baseline on known sub-pixel shifts, the trainers, and the five-percent experiment's plumbing."""

import argparse
import math
import os

import pytest
import torch

import lsn_fast as lf
from lsn_fast.tasks import metrics as M
from lsn_fast.tasks.jsn import SiameseJSN, _fourier_shift, joint_line, jsn_flag_reasons, poc_displacement, quantify_jsn, train_jsn_model
from lsn_fast.tasks.jsw_regression import JSWRegressor, evaluate_jsw, predict_jsw, train_jsw_regressor
from lsn_fast.tasks.svdh import SvdHClassifier, evaluate_svdh, predict_svdh, svdh_grade, train_svdh_classifier


# ----------------------------------------------------------------------------- metrics (hand-computed)
# pred = [1,2,3,4], true = [1,3,2,5]; errors 0,-1,1,-1
P, T = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0]


def test_mae_rmse_bias_hand():
    assert M.mae(P, T) == pytest.approx(3 / 4)
    assert M.rmse(P, T) == pytest.approx(math.sqrt(3 / 4))
    assert M.bias(P, T) == pytest.approx(-1 / 4)


def test_pearson_hand():
    # centred: p = [-1.5,-.5,.5,1.5], t = [-1.75,.25,-.75,2.25]; Σpt = 5.5, Σp² = 5, Σt² = 8.75
    assert M.pearson_r(P, T) == pytest.approx(5.5 / math.sqrt(5 * 8.75))
    assert math.isnan(M.pearson_r([1, 1, 1], [1, 2, 3]))


def test_icc_hand():
    # two-way ANOVA of Y = [[1,1],[2,3],[3,2],[4,5]]: MSR = 4.125, MSC = 0.125, MSE = 1.375/3
    msr, msc, mse, n, k = 4.125, 0.125, 1.375 / 3, 4, 2
    assert M.icc(P, T, "2,1") == pytest.approx((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))
    assert M.icc(P, T, "2,1") == pytest.approx(44 / 53)
    assert M.icc(P, T, "3,1") == pytest.approx(0.8)
    # perfect agreement -> 1; a constant offset hurts ICC(2,1) (absolute agreement), not ICC(3,1)
    assert M.icc(T, T) == pytest.approx(1.0)
    off = [t + 1 for t in T]
    assert M.icc(off, T, "3,1") == pytest.approx(1.0)
    assert M.icc(off, T, "2,1") < 0.9
    with pytest.raises(ValueError, match="kind"):
        M.icc(P, T, "1,1")


def test_classification_metrics_hand():
    t, p = [0, 1, 2, 2], [0, 2, 2, 1]
    cm = M.confusion_matrix(t, p, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert M.accuracy(t, p, 3) == pytest.approx(0.5)
    # Σ w·O = 2·(1/4) = 0.5;  E = outer([1,1,2],[1,1,2])/4 -> Σ w·E = 1.375;  κ = 1 − 0.5/1.375
    assert M.quadratic_weighted_kappa(t, p, 3) == pytest.approx(7 / 11)
    assert M.quadratic_weighted_kappa(t, t, 3) == pytest.approx(1.0)
    assert M.quadratic_weighted_kappa([0, 4], [4, 0], 5) == pytest.approx(-1.0)
    # degenerate: both raters constant (expected disagreement 0): agreement is 1, else 0
    assert M.quadratic_weighted_kappa([2, 2], [2, 2], 5) == 1.0
    assert M.quadratic_weighted_kappa([2, 2], [3, 3], 5) == pytest.approx(0.0)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="lengths"):
        M.mae([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        M.rmse([float("nan")], [1.0])
    with pytest.raises(ValueError, match="labels must lie"):
        M.confusion_matrix([0, 5], [0, 1], 5)


# ----------------------------------------------------------------------------- SvdH grading
def test_svdh_grade_thresholds():
    ref = 2.0  # losses: 0, 5%, 20%, 50%, 80%, 95%, 100%, and JSW above the reference
    j = torch.tensor([2.0, 1.9, 1.6, 1.0, 0.4, 0.1, 0.0, 2.5])
    assert svdh_grade(j, ref).tolist() == [0, 0, 1, 2, 3, 4, 4, 0]
    # own-baseline reference, per sample
    assert svdh_grade([1.0, 1.0], torch.tensor([1.0, 2.0])).tolist() == [0, 2]
    assert svdh_grade(1.15 * 0.5, "pip").tolist() == [2]
    with pytest.raises(ValueError, match="joint type"):
        svdh_grade(1.0, "knee")
    with pytest.raises(ValueError, match=">= 0"):
        svdh_grade(-0.1, 1.0)


# ----------------------------------------------------------------------------- POC JSN
def test_poc_displacement_fourier_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.randn(3, 1, 72, 72, generator=g), 5, 1, 2)
    d = torch.tensor([[1.7, 0.0], [-0.35, 0.3], [3.25, -1.2]])
    est = poc_displacement(x, _fourier_shift(x, d))
    assert (est - d).abs().max() < 0.05


@pytest.fixture(scope="module")
def phantoms():
    st, info = lf.phantom.generate(8, size=96, spacing_mm=0.1, seed=3, jsw_mm=torch.linspace(0.8, 2.4, 8), tilt_deg=0.0)
    return st, info


@pytest.mark.parametrize("noisy", [False, True])
def test_poc_jsn_known_subpixel_shift(phantoms, noisy):
    st, _ = phantoms
    shift = torch.tensor([-3.3, -1.55, -0.7, 0.0, 0.45, 1.25, -4.6, 2.8])  # px along the axis; negative narrows
    det = lf.Detector() if noisy else None
    base = lf.compose(st, detector=det, seed=1)
    fol = lf.compose(st, shift_px=shift, detector=det, seed=2)
    true = -shift * st.spacing_mm  # narrowing, mm (exact)
    jsn = quantify_jsn(base, fol, spacing_mm=st.spacing_mm, regions="profile", on_doubt="keep")
    assert jsn.shape == (8,)
    assert (jsn - true).abs().max() < 0.05, (jsn - true)
    # baseline vs itself: no narrowing
    assert quantify_jsn(base, base, st.spacing_mm, regions="profile").abs().max() < 1e-3


def test_poc_jsn_ignores_repositioning_and_uses_masks(phantoms):
    from lsn_fast.physics.reference import translate

    st, _ = phantoms
    shift = torch.full((8,), -2.35)
    moved = st.shifted(shift)
    rep = torch.tensor([[1.5, -2.0]]).expand(8, 2)  # the whole finger moves between visits
    moved = lf.LayerStack(translate(moved.soft, rep), translate(moved.upper, rep), translate(moved.lower, rep), 0.1,
                          st.axis, validate=False)
    base = lf.compose(st, detector=lf.Detector(), seed=5)
    fol = lf.compose(moved, detector=lf.Detector(), seed=6)
    jsn = quantify_jsn(base, fol, 0.1, regions="profile", on_doubt="keep")
    assert (jsn - 0.235).abs().max() < 0.05
    jm, det = quantify_jsn(base, fol, 0.1, on_doubt="keep", masks=(st.upper > 0.01, st.lower > 0.01), axis=(-1.0, 0.0), return_details=True)
    assert (jm - 0.235).abs().max() < 0.05
    assert (det["d_lower_px"] - rep).abs().max() < 0.3  # the lower bone only moved with the finger


# ----------------------------------------------------------------------------- JSN from the bone layers (issue 34)
def _moved_pair(n=4, size=128, seed=7, narrow=None, rep=None):
    """Phantom pairs: the distal bone moved towards the proximal one by ``narrow`` mm and the
    whole finger repositioned by ``rep`` px (both visits' layers and images)."""
    from lsn_fast.physics.reference import translate

    st, info = lf.phantom.generate(n, size=size, spacing_mm=0.1, seed=seed, jsw_mm=torch.linspace(1.0, 2.0, n))
    narrow = torch.linspace(-0.1, 0.6, n) if narrow is None else narrow
    fol = st.with_jsw(info["jsw_mm"] - narrow, bone="lower")
    rep = torch.tensor([[1.3, -0.8]]).expand(n, 2) if rep is None else rep
    fol = lf.LayerStack(translate(fol.soft, rep), translate(fol.upper, rep), translate(fol.lower, rep), 0.1, st.axis,
                        validate=False)
    det = lf.Detector(n0=3e4, blur_sigma_px=0.7)
    return st, fol, lf.compose(st, detector=det, seed=1), lf.compose(fol, detector=det, seed=2), narrow


def test_layer_poc_on_given_layers_is_exact_and_confident():
    st, fol, b, f, narrow = _moved_pair()
    jsn, det = quantify_jsn(b, f, 0.1, layers=(st, fol), return_details=True)
    assert (jsn - narrow).abs().max() < 0.01, jsn - narrow
    assert det["flags"].tolist() == [0] * 4 and bool((det["confidence"] > 0.5).all())
    assert (det["d_lower_px"] + det["d_lower_backward_px"]).abs().max() < 0.05  # forward/backward agree
    # the two bones share the repositioning across the axis
    assert det["perp_disagreement_px"].max() < 0.1


def test_layer_poc_default_separates_with_the_lsn():
    st, fol, b, f, narrow = _moved_pair(n=3, size=256, seed=8, narrow=torch.tensor([0.45, -0.2, 0.1]))
    jsn, det = quantify_jsn(b, f, 0.1, return_details=True)
    assert det["flags"].tolist() == [0, 0, 0]
    assert (jsn - narrow).abs().max() < 0.05, jsn - narrow
    assert "layers" in det and det["layers"][0].shape == (3, 256, 256)


def test_jsn_flags_unrelated_joints_instead_of_a_number():
    """Baseline and follow-up of different joints (or a follow-up without its distal bone): no
    registration is right, so each pair is flagged and NaN, never an unflagged number."""
    st, fol, b, f, _ = _moved_pair()
    other, _ = lf.phantom.generate(4, size=128, spacing_mm=0.1, seed=99, tilt_deg=(-25.0, 25.0))
    jsn, det = quantify_jsn(b, f, 0.1, layers=(st, other), return_details=True)
    assert bool(torch.isnan(jsn).all()), (jsn, det["flags"])
    assert bool((det["flags"] != 0).all())
    kept = quantify_jsn(b, f, 0.1, layers=(st, other), on_doubt="keep")
    assert bool(torch.isfinite(kept).all())  # on_doubt="keep" keeps the numbers
    empty = lf.LayerStack(fol.soft, fol.upper, torch.zeros_like(fol.lower), 0.1, fol.axis, validate=False)
    j2, d2 = quantify_jsn(b, f, 0.1, layers=(st, empty), return_details=True)
    assert bool(torch.isnan(j2).all()) and all("separation" in r for r in jsn_flag_reasons(d2["flags"]))


def test_quantify_jsn_new_arguments_are_checked():
    x = torch.rand(2, 1, 64, 64)
    with pytest.raises(ValueError, match="regions"):
        quantify_jsn(x, x, regions="rows")
    with pytest.raises(ValueError, match="on_doubt"):
        quantify_jsn(x, x, regions="profile", on_doubt="ignore")
    with pytest.raises(TypeError, match="layers"):
        quantify_jsn(x, x, layers=x)


def test_joint_line_finds_the_gap(phantoms):
    st, _ = phantoms
    img = lf.compose(st)
    a, b = joint_line(img)
    x = torch.arange(96.0)
    rows = a[:, None] + b[:, None] * x
    # at the centre column the split lies between the bones
    c = 48
    up = st.upper[:, :, c] > 0.01
    lo = st.lower[:, :, c] > 0.01
    y = torch.arange(96.0)
    u_end = torch.where(up, y, torch.tensor(-1.0)).amax(1)
    l_start = torch.where(lo, y, torch.tensor(999.0)).amin(1)
    assert bool(((rows[:, c] > u_end - 0.5) & (rows[:, c] < l_start + 0.5)).all())


def test_quantify_jsn_errors():
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="method"):
        quantify_jsn(x, x, method="magic")
    with pytest.raises(ValueError, match="followup"):
        quantify_jsn(x, torch.rand(2, 1, 32, 16))
    with pytest.raises(ValueError, match="model"):
        quantify_jsn(x, x, method="learned")
    with pytest.raises(ValueError, match="spacing_mm"):
        quantify_jsn(x, x, spacing_mm=-1.0)
    with pytest.raises(ValueError, match="baseline"):
        quantify_jsn(x[:, 0], x)


# ----------------------------------------------------------------------------- trainers
@pytest.fixture(scope="module")
def small_set():
    st, info = lf.phantom.generate(12, size=32, spacing_mm=0.2, seed=9)
    img = lf.compose(st, detector=lf.Detector(), seed=9)
    return img, info["jsw_mm"]


def test_subpixel_peak_gaussian_and_parabola_branches():
    from lsn_fast.tasks.jsn import _subpixel

    x = torch.tensor([-1.0, 0.0, 1.0])
    g = torch.exp(-((x - 0.3) ** 2) / (2 * 0.8**2))  # all samples > 0: the 3-point Gaussian fit is exact
    torch.testing.assert_close(_subpixel(g[0:1], g[1:2], g[2:3]), torch.tensor([0.3]))
    q = 1.0 - (x - 0.4) ** 2  # one neighbour <= 0 (-0.96): the parabola fit, exact on a parabola
    assert float(q[0]) <= 0
    torch.testing.assert_close(_subpixel(q[0:1], q[1:2], q[2:3]), torch.tensor([0.4]))
    q = 1.0 - (x + 0.4) ** 2  # mirrored: the sign follows the side of the peak
    torch.testing.assert_close(_subpixel(q[0:1], q[1:2], q[2:3]), torch.tensor([-0.4]))


def test_jsw_regressor_trains_from_tensors_and_iterables(small_set):
    img, jsw = small_set
    m = train_jsw_regressor(img, jsw, steps=4, batch_size=6, seed=0)
    assert isinstance(m, JSWRegressor)
    p = predict_jsw(m, img)
    assert p.shape == (12,) and bool(torch.isfinite(p).all())
    met = evaluate_jsw(m, img, jsw)
    assert set(met) >= {"mae", "rmse", "r", "icc"}
    # the metrics are of (prediction, truth) in that order: bias = mean(pred − true)
    assert met == pytest.approx(M.regression_metrics(p, jsw))
    assert met["bias"] == pytest.approx(float((p - jsw).mean()), abs=1e-6)
    batches = [(img[:6], jsw[:6], {}), (img[6:], jsw[6:], {})]  # like JSWStream's (images, jsw, info)
    m2 = train_jsw_regressor(source=batches, steps=3, seed=1)
    assert bool(torch.isfinite(predict_jsw(m2, img)).all())
    # the same seed gives the same model
    m3 = train_jsw_regressor(img, jsw, steps=4, batch_size=6, seed=0)
    assert torch.allclose(predict_jsw(m3, img), p)
    with pytest.raises(ValueError, match="jsw"):
        train_jsw_regressor(img, jsw[:3], steps=1)


def test_jsn_model_and_learned_quantify(small_set):
    img, jsw = small_set
    m = train_jsn_model(img, img.flip(0), torch.linspace(-0.2, 0.8, 12), steps=3, batch_size=4)
    assert isinstance(m, SiameseJSN)
    out = quantify_jsn(img, img, 0.2, method="learned", model=m)
    assert out.shape == (12,) and bool(torch.isfinite(out).all())
    with torch.no_grad():  # "learned" is the model's own output in mm, batched
        torch.testing.assert_close(out, m.eval()(img, img).float().reshape(-1))
    torch.testing.assert_close(quantify_jsn(img, img, 0.2, method="learned", model=m, batch_size=5), out)


def test_jsn_collapse_guard_restarts_a_constant_model(small_set):
    """A model that ignores its input (here: lr ~ 0, so the init's near-constant output stays) is
    retrained from new initializations, with a warning; so is one whose output moves but not
    with its labels (correlation below COLLAPSE_R); one that tracks its labels is not."""
    import warnings

    from lsn_fast.tasks.jsn import COLLAPSE_R, COLLAPSE_SPREAD, output_fit, output_spread

    img, _ = small_set
    y = torch.linspace(-0.2, 0.8, 12)
    with pytest.warns(UserWarning, match="collapsed"):
        m = train_jsn_model(img, img.flip(0), y, steps=1, batch_size=4, lr=1e-12, restarts=2)
    assert m.restarts == 2
    src = lambda n, g: (img[:n], img.flip(0)[:n], y[:n])  # noqa: E731
    assert output_spread(m, src) < COLLAPSE_SPREAD
    # restarts=0 is the unguarded trainer (lr ~ 0: the first attempt's init, unchanged)
    m0 = train_jsn_model(img, img.flip(0), y, steps=1, batch_size=4, lr=1e-12, restarts=0)
    with torch.no_grad():
        own = m0.eval()(img, img.flip(0)).reshape(-1)
    # tiny labels proportional to the first attempt's own output (the output is scale × head, and
    # the trainer sets scale from the labels' std): spread well above COLLAPSE_SPREAD and r = 1,
    # so no restart, no warning, and the same weights as the unguarded trainer's
    tiny = 1e-4 * (own - own.mean()) / own.std()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m2 = train_jsn_model(img, img.flip(0), tiny, steps=1, batch_size=4, lr=1e-12, restarts=2)
    assert m2.restarts == 0
    m0b = train_jsn_model(img, img.flip(0), tiny, steps=1, batch_size=4, lr=1e-12, restarts=0)
    assert all(torch.equal(a, b) for a, b in zip(m0b.state_dict().values(), m2.state_dict().values()))
    # the same spread, anti-correlated labels: r = -1 < COLLAPSE_R, so the guard restarts
    spread, r = output_fit(m2, lambda n, g: (img, img.flip(0), -tiny))
    assert spread > COLLAPSE_SPREAD and r < -0.99 < COLLAPSE_R
    with pytest.warns(UserWarning, match="correlation"):
        m3 = train_jsn_model(img, img.flip(0), -tiny, steps=1, batch_size=4, lr=1e-12, restarts=1)
    assert m3.restarts == 1
    with pytest.raises(ValueError, match="restarts"):
        train_jsn_model(img, img.flip(0), y, steps=1, restarts=-1)


def test_svdh_classifier(small_set):
    img, jsw = small_set
    grades = svdh_grade(jsw, 2.0)
    m = train_svdh_classifier(img, grades, steps=3, batch_size=6)
    assert isinstance(m, SvdHClassifier)
    met = evaluate_svdh(m, img, grades)
    assert 0.0 <= met["accuracy"] <= 1.0 and len(met["confusion"]) == 5
    pred = predict_svdh(m, img)
    assert met["accuracy"] == pytest.approx(float((pred == grades).float().mean()))
    # confusion rows are the true grades, columns the predicted ones: a model that always says
    # grade 3, scored on grades 0..4, fills column 3 only (the trained tiny model may predict
    # the grades' own distribution, where a transposed matrix would not show)

    class AlwaysThree(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 5).float()

    g = torch.tensor([0, 1, 2, 3, 4, 4, 0, 1, 2, 3, 4, 4])
    cm = torch.tensor(evaluate_svdh(AlwaysThree(), img, g)["confusion"])
    assert cm[:, 3].tolist() == [2, 2, 2, 2, 4] and int(cm.sum()) == int(cm[:, 3].sum())
    with pytest.raises(ValueError, match="grades"):
        train_svdh_classifier(img, torch.full((12,), 7), steps=1)


# ----------------------------------------------------------------------------- experiment (plumbing, not the claim)
def test_synthesizer_integer_moves_are_exact_copies_labelled_by_the_jsw_reached():
    """``moves="integer"``: the upper bone moves by whole pixels only (an exact copy of the
    layer, edge-clamped), the label is the JSW the move reaches (the true layers' measured JSW
    agrees within 0.01 mm on tilted joints), no label is negative, and the other modes leave the
    target alone."""
    from lsn_fast.physics.moves import split_whole_pixel
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer

    st, info = lf.phantom.generate(6, size=64, spacing_mm=0.2, seed=21, tilt_deg=(-10.0, 10.0))
    cfg = FivePercentConfig.tiny()
    syn = Synthesizer(st, info["jsw_mm"], cfg, moves="integer")
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 2])
    target = torch.tensor([0.0, 0.05, 0.7, 1.33, 2.2, 2.95, 0.0])
    t, d = syn.snap(idx, target)
    assert d.shape == (7, 2) and bool((d == torch.round(d)).all()) and bool((t >= 0).all())
    assert float((t - target).abs().max()) <= 0.75 * 0.2 + 0.2 + 1e-6  # rounding, or one pixel wider
    moved = syn.posed_layers(idx, t, None, None, disp=d)
    for k in range(7):  # an exact copy: the layer read at whole-pixel offsets (interior)
        dy, dx = int(d[k, 0]), int(d[k, 1])
        src = st.upper[idx[k]]
        want = src[max(0, -dy):64 - max(0, dy), max(0, -dx):64 - max(0, dx)]
        got = moved.upper[k][max(0, dy):64 - max(0, -dy), max(0, dx):64 - max(0, -dx)]
        assert torch.equal(got, want)
    torch.testing.assert_close(lf.measure_jsw(moved), t, atol=0.01, rtol=0)
    x, lab = syn.jsw_batch(5, torch.Generator().manual_seed(4))
    assert x.shape == (5, 1, 64, 64) and bool((lab >= 0).all())
    a, b, dj = syn.pair_batch(3, torch.Generator().manual_seed(5))
    assert a.shape == b.shape == (3, 1, 64, 64) and dj.shape == (3,)
    both = Synthesizer(st, info["jsw_mm"], cfg, moves="integer", bone="both")  # the whole-pixel move split between the bones
    t2, d2 = both.snap(idx, target)
    assert bool((d2 == torch.round(d2)).all()) and bool((t2 >= 0).all())
    moved2 = both.posed_layers(idx, t2, None, None, disp=d2)
    torch.testing.assert_close(lf.measure_jsw(moved2), t2, atol=0.01, rtol=0)
    up, low = split_whole_pixel(d2)
    torch.testing.assert_close(up + low, d2)
    assert bool(((up - low).abs() <= 1).all())  # centred within half a pixel per component
    k = int(torch.nonzero((low.abs().sum(1) > 0)).flatten()[0])  # an entry whose lower bone moved
    dy, dx = -int(low[k, 0]), -int(low[k, 1])
    want = st.lower[idx[k]][max(0, -dy):64 - max(0, dy), max(0, -dx):64 - max(0, dx)]
    assert torch.equal(moved2.lower[k][max(0, dy):64 - max(0, -dy), max(0, dx):64 - max(0, -dx)], want)
    lin = Synthesizer(st, info["jsw_mm"], cfg, bone="both")
    torch.testing.assert_close(lf.measure_jsw(lin.posed_layers(idx, target, None, None)), target, atol=0.01, rtol=0)
    x, lab = lin.jsw_batch(4, torch.Generator().manual_seed(6))
    assert x.shape == (4, 1, 64, 64)
    with pytest.raises(ValueError, match="bone"):
        Synthesizer(st, info["jsw_mm"], cfg, bone="lower")
    same = Synthesizer(st, info["jsw_mm"], cfg)
    assert same.snap(idx, target)[1] is None and torch.equal(same.snap(idx, target)[0], target)
    with pytest.raises(ValueError, match="moves"):
        Synthesizer(st, info["jsw_mm"], cfg, moves="nearest")


def test_synthesizer_layer_pose_keeps_the_label(phantoms):
    """(c4)'s re-posed joints: after the move to the target JSW, the repositioning and the
    flip/rotation, the layers' measured JSW is the label (true layers as the bank: within
    0.02 mm), and the two visits of a JSN pair share one pose."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer

    st, info = phantoms
    syn = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), rotate_deg=12.0, hflip=0.5)
    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([0, 3, 5, 7, 2])
    target = torch.tensor([0.3, 1.1, 2.0, 2.9, 0.05])
    pose = syn._draw_pose(5, g)
    angle, flip = pose["angle_deg"], pose["flip"]
    assert set(pose) == {"angle_deg", "flip"}  # no anatomy draws: the pose-only stream is unchanged
    assert bool(flip.any()) and not bool(flip.all()) and float(angle.abs().max()) <= 12.0
    rep = torch.tensor([[1.5, -2.0], [0.0, 1.0], [-1.0, 0.5], [2.0, 2.0], [0.0, 0.0]])
    out = syn.posed_layers(idx, target, angle, flip, reposition=rep)
    torch.testing.assert_close(lf.measure_jsw(out), target, atol=0.02, rtol=0)
    # new anatomies (stretch across the axis, per-layer density) keep the label too
    ana = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), rotate_deg=12.0, stretch=0.15, density=0.2)
    pose = ana._draw_pose(5, g)
    assert float((pose["stretch"] - 1).abs().max()) <= 0.15 and pose["density"].shape == (3, 5)
    out = ana.posed_layers(idx, target, reposition=rep, **pose)
    torch.testing.assert_close(lf.measure_jsw(out), target, atol=0.02, rtol=0)
    plain_out = syn.posed_layers(idx, target, pose["angle_deg"], pose["flip"], reposition=rep)
    ratio = out.upper.sum(dim=(1, 2)) / plain_out.upper.sum(dim=(1, 2))  # ≈ stretch × upper density
    torch.testing.assert_close(ratio, pose["stretch"] * pose["density"][1], rtol=0.03, atol=0)
    for bad in ({"stretch": 0.5}, {"density": -0.1}, {"stretch": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), **bad)
    plain = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny())
    assert syn.reposes and not plain.reposes
    seen = []
    orig = syn._render
    syn._render = lambda idx, t, g, reposition=None, disp=None: seen.append(syn._pose) or orig(idx, t, g, reposition, disp)
    a, b, d = syn.pair_batch(4, torch.Generator().manual_seed(2))
    assert a.shape == b.shape == (4, 1, 96, 96) and d.shape == (4,)
    assert seen[0] is seen[1] and syn._pose is None
    with pytest.raises(ValueError, match="rotate_deg"):
        Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), rotate_deg=-1.0)
    with pytest.raises(ValueError, match="hflip"):
        Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), hflip=2.0)


def test_synthesizer_anatomy_draws_cover_both_sides_of_one(phantoms):
    """``stretch`` / ``density``: factors uniform in ``1 ± stretch`` / ``1 ± density``, so over 4000
    draws (fixed seed) both lie inside their ranges, about half of them (0.45–0.55; binomial
    sd 0.008) below 1, with mean 1 ± 0.01 (sd ≈ 0.002) and both ends of the range reached
    to within 5 % of the half-range (a uniform misses that with probability ~1e-44)."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer

    st, info = phantoms
    n = 4000
    pose = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), stretch=0.2, density=0.3)._draw_pose(
        n, torch.Generator().manual_seed(0))
    for name, half, f in (("stretch", 0.2, pose["stretch"]), ("density", 0.3, pose["density"])):
        assert f.shape == ((n,) if name == "stretch" else (3, n)), name
        f = f.double().reshape(-1)
        assert float(f.min()) >= 1 - half - 1e-6 and float(f.max()) <= 1 + half + 1e-6, name
        assert float(f.min()) < 1 - 0.95 * half and float(f.max()) > 1 + 0.95 * half, name
        assert 0.45 < float((f < 1).double().mean()) < 0.55, name
        assert abs(float(f.mean()) - 1) < 0.01, name


def test_mixed_source_takes_round_frac_times_batch_from_b():
    """``mixed_source(a, b, frac_b)``: each batch holds ``round(frac_b·batch)`` samples of ``b`` and
    the rest of ``a``, each source asked once for exactly its count (not at all for none).
    Cases where rounding matters: 7·0.5 = 3.5 -> 4 and 3·0.5 = 1.5 -> 2 (flooring gives 3 and 1;
    Python's half-to-even and half-up agree on these ties), 10·0.26 = 2.6 -> 3, 10·0.24 = 2.4 -> 2
    (ceiling gives 3), 4·0.1 = 0.4 -> 0; and the ends 0 and 1."""
    from lsn_fast.tasks.common import mixed_source

    asked = []

    def source(value):
        def fn(batch, g):
            asked.append((value, batch))
            return torch.full((batch, 1, 2, 2), float(value)), torch.full((batch,), float(value))
        return fn

    for batch, frac, nb in ((7, 0.5, 4), (3, 0.5, 2), (10, 0.26, 3), (10, 0.24, 2), (4, 0.1, 0), (9, 0.0, 0), (9, 1.0, 9)):
        asked.clear()
        x, y = mixed_source(source(0), source(1), frac)(batch, torch.Generator().manual_seed(0))
        assert x.shape == (batch, 1, 2, 2) and y.shape == (batch,), (batch, frac)
        assert int(y.sum()) == nb and int(x.sum()) == 4 * nb, (batch, frac)
        assert sorted(asked) == sorted([(0, batch - nb)] * (batch > nb) + [(1, nb)] * (nb > 0)), (batch, frac, asked)


def test_synthesizer_texture_carry_keeps_the_source_noise(phantoms):
    """Texture carry (the LSN synthesis of --quick): at the annotated JSW a family
    member *is* its source image; moved, it keeps the source's noise level (no new detector,
    no smoothing beyond the moved bone's interpolation), and JSN pairs still come out."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer

    st, info = phantoms
    img = lf.compose(st, detector=lf.Detector(n0=5e3, blur_sigma_px=0.6), seed=3)
    cfg = FivePercentConfig.tiny()
    syn = Synthesizer(st, info["jsw_mm"], cfg, images=img)
    assert syn.carries_texture and not Synthesizer(st, info["jsw_mm"], cfg).carries_texture
    idx = torch.tensor([1, 4, 6])
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(syn._render(idx, syn.labels[idx], g), img[idx], atol=1e-5, rtol=0)
    target = syn.labels[idx] + torch.tensor([0.4, -0.2, 0.3]).clamp_min(-syn.labels[idx])
    out = syn._render(idx, target, g)
    clean = lf.compose(st[idx].shifted((target - syn.labels[idx]) / st.spacing_mm))
    noise_src = (img - lf.compose(st)).std()
    noise_out = (out - clean).std()
    assert 0.85 < float(noise_out / noise_src) < 1.1, (float(noise_out), float(noise_src))
    a, b, d = syn.pair_batch(3, torch.Generator().manual_seed(2))
    assert a.shape == b.shape == (3, 1, 96, 96) and bool(torch.isfinite(a).all() & torch.isfinite(b).all())


def test_unlabelled_arm_labels_come_from_the_layers_not_the_hidden_truth():
    """Arm (e): labelled images keep their annotations; the others get the line fitted on the
    labelled ones applied to the JSW measured on their separated layers. Changing the hidden
    truth of the unlabelled images must not change a single label (no leakage), and with the
    shipped LSN the measured labels are close to the truth (here within 0.1 mm on average)."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, _unlabelled_synthesizer

    cfg = FivePercentConfig.tiny()
    n, n_low = 16, 6
    st, info = lf.phantom.generate(n, size=64, spacing_mm=0.2, seed=21, jsw_mm=torch.linspace(0.4, 2.8, n))
    train = {"base": lf.compose(st, detector=lf.Detector(n0=2e4), seed=4), "jsw": info["jsw_mm"].float()}
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    lsn = lf.LSN.pretrained()
    syn, (c0, c1, mae) = _unlabelled_synthesizer(train, order, n_low, lsn, cfg)
    assert syn.bank.batch_size == n  # every phantom joint is measurable
    torch.testing.assert_close(syn.labels[:n_low], train["jsw"][order[:n_low]])
    torch.testing.assert_close(syn.labels[n_low:], (c0 + c1 * syn.j0[n_low:].double()).float(), atol=1e-4, rtol=0)
    assert mae < 0.1, mae
    leaked = dict(train, jsw=train["jsw"].clone())
    leaked["jsw"][order[n_low:]] += 5.0
    syn2, (d0, d1, mae2) = _unlabelled_synthesizer(leaked, order, n_low, lsn, cfg)
    torch.testing.assert_close(syn2.labels, syn.labels)
    assert abs(d0 - c0) < 1e-9 and abs(d1 - c1) < 1e-9 and mae2 > 4.0  # lstsq: last-bit differences by thread count


def test_five_percent_tiny(tmp_path):
    from lsn_fast.experiments.five_percent import FivePercentConfig, run_five_percent

    with pytest.warns(UserWarning, match="the model collapsed"):  # 3 steps: the JSN model's collapse guard speaks
        res = run_five_percent(config=FivePercentConfig.tiny(), seeds=(0,), out_dir=str(tmp_path), log=lambda *a: None)
    agg = res["aggregate"]
    arms = {(a["task"], a["arm"]) for a in agg}
    for task in ("jsw", "jsn", "svdh"):
        for arm in ("real 10%", "real 100%", "10% + naive aug"):
            assert (task, arm) in arms
        assert any(t == task and "synth (mixed)" in a for t, a in arms)
        assert any(t == task and "pretrain→finetune" in a for t, a in arms)
        assert any(t == task and "layer pose (mixed)" in a for t, a in arms)
        assert any(t == task and "all images, LSN-measured synth" in a for t, a in arms)
    assert ("jsn", "POC (no training)") in arms
    for a in agg:
        keys = ("accuracy", "qwk") if a["task"] == "svdh" else ("mae", "rmse")
        for k in keys:
            assert math.isfinite(a[k]) and math.isfinite(a[k + "_std"])
    assert res["realism"] and all(0.0 <= v[0] <= 1.0 for v in res["realism"].values())
    geo = res["geometry"]
    assert geo["meter"][0]["arm"] == "real 100%"
    # the meter's real-test error is the 100 % arm's own MAE row
    row = next(a for a in agg if a["task"] == "jsw" and a["arm"] == "real 100%")
    assert abs(geo["meter"][0]["mae"] - row["mae"]) < 1e-6
    assert {"lsn", "oracle", "lsn_rendered", "unlabelled"} <= set(geo)
    for name in ("lsn", "oracle", "lsn_rendered", "unlabelled"):
        g = geo[name][0]
        assert math.isfinite(g["mae"]) and g["mae"] >= abs(g["bias"])
    assert "Geometry check:" in (tmp_path / "table.md").read_text()
    assert res["table"].startswith("| task | arm |")
    for name in ("table.md", "table.csv", "raw.csv", "summary.json", "error_vs_fraction.png", "pred_vs_true_jsw.png"):
        assert os.path.getsize(tmp_path / name) > 0


def test_geometry_check_reads_the_families_it_is_given(phantoms):
    """The geometry check scores a meter on family members at *their* labels. A meter that knows
    each label scores 0 (and an offset shows as MAE and bias of its size and sign); a meter that
    reads the JSW the way one trained on joint-centred crops may (twice the distance from the crop
    centre to the upper bone) reads one-bone families off by the move, and centred ones
    (``bone="both"``) within a few pixels."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer, _geometry_check

    st, info = phantoms
    cfg = FivePercentConfig.tiny()
    n = 32

    class Known(torch.nn.Module):
        def forward(self, x):
            return self.t[: x.shape[0]]

    synth = Synthesizer(st, info["jsw_mm"], cfg)
    known = Known()
    known.t = synth.jsw_batch(n, torch.Generator().manual_seed(5 + 79))[1]  # the check's own draws
    res = _geometry_check(known, synth, n, seed=5)
    assert res["mae"] < 1e-6 and abs(res["bias"]) < 1e-6
    known.t = known.t - 0.3
    res = _geometry_check(known, synth, n, seed=5)
    assert abs(res["mae"] - 0.3) < 1e-5 and abs(res["bias"] + 0.3) < 1e-5

    class CentreMeter(torch.nn.Module):
        def forward(self, x):
            col = x[:, 0, :, x.shape[-1] // 2]
            H = col.shape[1]
            bone = col > 0.5 * (col.amax(1, keepdim=True) + col.amin(1, keepdim=True))
            rows = torch.arange(H).expand_as(bone)
            edge = torch.where(bone & (rows < H // 2), rows, -1).amax(1) + 1  # first gap row below the upper bone
            return 2 * (H / 2 - edge).float() * st.spacing_mm

    # the bank as joint-centred crops: each phantom rolled so its gap (centre column) sits at H/2
    H = st.shape[1]
    rows = torch.arange(H)
    layers = {k: [] for k in ("soft", "upper", "lower")}
    for i in range(st.batch_size):
        up = int(rows[st.upper[i, :, H // 2] > 0.01].max()) + 1
        low = int(rows[st.lower[i, :, H // 2] > 0.01].min())
        for k in layers:
            layers[k].append(torch.roll(getattr(st, k)[i], round(H / 2 - (up + low) / 2), dims=0))
    centred = lf.LayerStack(*(torch.stack(layers[k]) for k in ("soft", "upper", "lower")), st.spacing_mm)
    one = _geometry_check(CentreMeter(), Synthesizer(centred, info["jsw_mm"], cfg, bone="upper"), n, seed=5)
    both = _geometry_check(CentreMeter(), Synthesizer(centred, info["jsw_mm"], cfg, bone="both"), n, seed=5)
    assert one["mae"] > 0.4, one  # moves of ~1 mm on average, read off by the whole move
    assert both["mae"] < 0.25 * one["mae"], (one, both)


def _run_expecting_only_collapse_warnings(fn, *args):
    """Run ``fn``; the tiny runs' 3-step JSN models may collapse (a warning each), nothing else may warn."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args)
    other = [str(w.message) for w in caught if "collapsed" not in str(w.message)]
    assert not other, other
    return out


def test_experiment_cli_arguments(tmp_path):
    import json

    from lsn_fast.model.lsn import DEFAULT_WEIGHTS
    from lsn_fast.experiments.five_percent import add_experiment_arguments, run_experiment

    p = argparse.ArgumentParser()
    add_experiment_arguments(p)
    args = p.parse_args(["--quick", "--out", str(tmp_path), "--seeds", "0"])
    assert args.quick and args.seeds == [0] and args.threads == 1
    args = p.parse_args(["--tiny", "--out", str(tmp_path), "--no-plots", "--no-oracle", "--threads", "0"])
    assert _run_expecting_only_collapse_warnings(run_experiment, args) == 0
    assert (tmp_path / "table.md").exists() and not (tmp_path / "error_vs_fraction.png").exists()
    args = p.parse_args(["--tiny", "--out", str(tmp_path), "--synth-frac", "1.5"])
    with pytest.raises(ValueError, match="--synth-frac"):
        run_experiment(args)
    args = p.parse_args(["--tiny", "--out", str(tmp_path), "--jobs", "-1"])
    with pytest.raises(ValueError, match="--jobs"):
        run_experiment(args)
    for bad in ("tpu", "not a device") + (() if torch.cuda.is_available() else ("cuda", "cuda:0")):
        args = p.parse_args(["--tiny", "--out", str(tmp_path), "--device", bad])
        with pytest.raises(ValueError, match="device"):
            run_experiment(args)
    args = p.parse_args(["--tiny", "--out", str(tmp_path), "--lsn-weights", str(tmp_path / "missing.safetensors")])
    with pytest.raises(FileNotFoundError, match="lsn_weights"):
        run_experiment(args)
    shipped = str(DEFAULT_WEIGHTS)
    args = p.parse_args(["--tiny", "--out", str(tmp_path), "--synthesis", "render", "--device", "cpu", "--no-plots",
                         "--moves", "integer", "--bone", "both", "--lsn-weights", shipped])
    assert args.synthesis == "render" and args.moves == "integer" and args.bone == "both"
    assert _run_expecting_only_collapse_warnings(run_experiment, args) == 0
    assert "synthesis=render" in (tmp_path / "table.md").read_text()
    assert "bone=both, moves=integer" in (tmp_path / "table.md").read_text()
    assert f"lsn_weights={shipped}" in (tmp_path / "table.md").read_text()
    # a rendered run records the carried families too (realism and geometry), from the same layers
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"lsn", "lsn_carried", "control"} <= set(summary["realism"]) and "lsn_rendered" not in summary["realism"]
    assert {"lsn", "lsn_carried"} <= set(summary["geometry"])
    assert "not rendered" in (tmp_path / "table.md").read_text()


def test_five_percent_loads_the_named_lsn_weights(tmp_path):
    from lsn_fast.model.lsn import LSNConfig, save_weights
    from lsn_fast.experiments.five_percent import _load_lsn

    torch.manual_seed(0)
    other = lf.LSN(LSNConfig.tiny())
    path = str(tmp_path / "other.safetensors")
    save_weights(other, path)
    model, status = _load_lsn(print, path)
    assert status == f"weights {path}"
    small, status_default = _load_lsn(print, None)  # the experiment's default: the shipped 128 px weights
    assert status_default == "pretrained small-fov"
    for k, v in lf.LSN.pretrained("small-fov").state_dict().items():
        assert torch.equal(small.state_dict()[k], v), k
    assert model.config == other.config and model.num_parameters != lf.LSN.pretrained().num_parameters
    for k, v in other.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises((FileNotFoundError, OSError, ValueError)):  # named but missing: no silent fallback to the oracle
        _load_lsn(print, str(tmp_path / "nope.safetensors"))


def test_five_percent_seeds_in_processes_give_the_same_rows():
    """``jobs=2`` runs each seed in its own spawned process; a seed's rows must not depend on the
    process or on the seeds run before it (each seed owns its generators)."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, default_jobs, run_five_percent

    cfg, quiet = FivePercentConfig.tiny(), (lambda *a: None)
    with pytest.warns(UserWarning, match="the model collapsed"):  # 3 steps: the JSN model's collapse guard speaks
        one = run_five_percent(config=cfg, seeds=(0, 1), out_dir=None, log=quiet, jobs=1)
    two = run_five_percent(config=cfg, seeds=(0, 1), out_dir=None, log=quiet, jobs=2)
    assert len(one["rows"]) > 20
    assert two["rows"] == one["rows"] and two["realism"] == one["realism"]
    with pytest.warns(UserWarning, match="the model collapsed"):
        alone = run_five_percent(config=cfg, seeds=(1,), out_dir=None, log=quiet, jobs=1)
    assert alone["rows"] == [r for r in one["rows"] if r["seed"] == 1]
    with pytest.raises(ValueError, match="jobs"):
        run_five_percent(config=cfg, seeds=(0,), out_dir=None, log=quiet, jobs=0)
    assert default_jobs(3, 1) >= 1 and default_jobs(1, 1) == 1 and default_jobs(3, 10_000) == 1


@pytest.mark.slow
def test_five_percent_quick_runs_under_ten_minutes(tmp_path):
    """Issue 6: ``lsn-fast experiment five-percent --quick`` runs the whole experiment on CPU in
    under 10 minutes, with every task and arm reported. One pipeline check on the numbers: the
    LSN families must beat 5 % of the labels alone on JSN (a synthesizer with broken labels
    or broken images would not; quick runs measured 0.07 vs 0.25 mm); the realism critic must
    pass its positive control, and the LSN families must meet the realism target (≤ 0.6)."""
    import json
    import time

    from lsn_fast.cli.main import main

    t0 = time.perf_counter()
    assert main(["experiment", "five-percent", "--quick", "--out", str(tmp_path)]) == 0
    wall = time.perf_counter() - t0
    assert wall < 600, f"--quick took {wall:.0f} s"
    summary = json.loads((tmp_path / "summary.json").read_text())
    agg = {(a["task"], a["arm"]): a for a in summary["aggregate"]}
    for task in ("jsw", "jsn", "svdh"):
        for arm in ("real 5%", "real 100%", "5% + naive aug", "5% + LSN synth (mixed)", "5% + LSN synth + aug (mixed)",
                    "5% + LSN synth (pretrain→finetune)", "5% + LSN synth + layer pose (mixed)"):
            assert (task, arm) in agg, (task, arm)
            assert agg[(task, arm)]["n_seeds"] == 2
    assert agg[("jsn", "5% + LSN synth (mixed)")]["mae"] < agg[("jsn", "real 5%")]["mae"]
    # the realism critic must see a flaw a reader sees (σ = 1 px blur); measured 0.98 / 1.00
    assert min(summary["realism"]["control"]) > 0.8, summary["realism"]
    # issue 6's realism target for --quick's (texture-carrying) LSN families; measured 0.457 ± 0.037
    # on 2026-12-03 (the same layers rendered through a new detector: 0.647, reported as lsn_rendered)
    lsn = summary["realism"]["lsn"]
    assert sum(lsn) / len(lsn) <= 0.6, summary["realism"]
    for name in ("table.md", "error_vs_fraction.png", "pred_vs_true_jsw.png"):
        assert (tmp_path / name).stat().st_size > 0


# ----------------------------------------------------------------------------- layer supervision (arm c3L)
def test_jsw_layer_batch_returns_the_layers_each_image_was_composed_from(phantoms):
    """``Synthesizer.jsw_layer_batch`` (carried bank, both bones, whole-pixel moves: the
    experiment's setting): the same images as ``jsw_batch`` for the same generator; each image
    minus its two bone layers is an unmoved soft layer of the bank, and each bone layer is a
    whole-pixel copy of that entry's bone, moved in opposite directions."""
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer

    st, info = phantoms
    img = lf.compose(st, detector=lf.Detector(n0=5e3, blur_sigma_px=0.6), seed=3)
    syn = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), images=img, moves="integer", bone="both")
    x0, t0 = syn.jsw_batch(6, torch.Generator().manual_seed(5))
    x, t, bones, has = syn.jsw_layer_batch(6, torch.Generator().manual_seed(5))
    torch.testing.assert_close(x, x0, rtol=0, atol=0)
    torch.testing.assert_close(t, t0, rtol=0, atol=0)
    assert bones.shape == (6, 2, 96, 96) and has.dtype == torch.bool and bool(has.all())
    bank = syn.bank
    soft = x[:, 0] - bones.sum(1)
    for k in range(6):
        err = (bank.soft - soft[k]).abs().flatten(1).amax(1)
        e = int(err.argmin())
        assert float(err[e]) < 1e-5, float(err.min())
        found = {}
        for name, layer, moved in (("upper", bank.upper[e], bones[k, 0]), ("lower", bank.lower[e], bones[k, 1])):
            for dy in range(-8, 9):  # the interior of a whole-pixel copy matches exactly at one offset
                for dx in range(-8, 9):
                    ref = torch.roll(layer, (dy, dx), (0, 1))[10:-10, 10:-10]
                    if float((ref - moved[10:-10, 10:-10]).abs().max()) < 1e-6:
                        found[name] = (dy, dx)
            assert name in found, (k, name)
        (uy, ux), (ly, lx) = found["upper"], found["lower"]
        assert abs(uy + ly) <= 1 and abs(ux + lx) <= 1  # split_whole_pixel: opposite halves


def test_naive_augment_dense_maps_follow_the_image():
    from lsn_fast.tasks.common import naive_augment

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 24, 20, generator=g) + 0.5
    y = torch.rand(4)
    maps = torch.cat([x, 2 * x], 1)
    xa, ya = naive_augment()((x, y), torch.Generator().manual_seed(1))
    xd, yd, md = naive_augment(dense=True)((x, y, maps), torch.Generator().manual_seed(1))
    torch.testing.assert_close(xd, xa)  # the same draws as without maps
    torch.testing.assert_close(md[:, :1], xd)  # same warp and intensity scale
    torch.testing.assert_close(md[:, 1:], 2 * xd)
    assert torch.equal(yd, y)
    with pytest.raises(ValueError, match="pair, dense"):
        naive_augment(pair=True, dense=True)


def test_layer_supervision_trains_the_head_and_leaves_the_jsw_path_alone(phantoms):
    """``train_jsw_regressor(layer_weight>0)``: the head's error against the layer targets
    falls, predictions do not use the head, bad batches and weights are named errors."""
    from lsn_fast.tasks.common import mixed_source, naive_augment, tensor_source
    from lsn_fast.experiments.five_percent import FivePercentConfig, Synthesizer
    from lsn_fast.tasks.jsw_regression import _layer_loss, layer_targets, without_layers

    st, info = phantoms
    img = lf.compose(st, detector=lf.Detector(n0=5e3, blur_sigma_px=0.6), seed=3)
    syn = Synthesizer(st, info["jsw_mm"], FivePercentConfig.tiny(), images=img, moves="integer", bone="both")
    src = mixed_source(without_layers(tensor_source(img, info["jsw_mm"])), syn.jsw_layer_batch, 0.5)
    xb, yb, bb, hb = syn.jsw_layer_batch(8, torch.Generator().manual_seed(9))

    def head_mse(m):
        with torch.no_grad():
            _, lay = m(xb, return_layers=True)
            return float(((lay - layer_targets(xb, bb, lay.shape[-2:])) ** 2).mean())

    torch.manual_seed(0)
    m0 = JSWRegressor()
    m0.attach_layer_head()
    m = train_jsw_regressor(source=src, steps=25, batch_size=8, seed=0, augment=naive_augment(dense=True),
                            layer_weight=1.0)
    assert m.layer_head is not None
    assert head_mse(m) < 0.7 * head_mse(m0), (head_mse(m), head_mse(m0))
    with torch.no_grad():
        p, _ = m(xb, return_layers=True)
    torch.testing.assert_close(predict_jsw(m, xb), p)
    # rows without layers add nothing to the layer term
    with torch.no_grad():
        zero = _layer_loss(1.0)(m, (xb, yb, torch.zeros_like(bb), torch.zeros(8, dtype=torch.bool)))
        plain = torch.nn.functional.smooth_l1_loss(m(xb), yb, beta=0.1)
    assert float(zero) == pytest.approx(float(plain), rel=1e-5)
    with pytest.raises(ValueError, match="layer_weight"):
        train_jsw_regressor(source=src, steps=1, layer_weight=-1.0)
    with pytest.raises(ValueError, match="bones, has_bones"):
        train_jsw_regressor(source=tensor_source(img, info["jsw_mm"]), steps=1, layer_weight=1.0)
    with pytest.raises(ValueError, match="entry 2"):
        train_jsw_regressor(source=lambda b, g: (xb, yb, bb[:, :1], hb), steps=1, layer_weight=1.0)
    with pytest.raises(RuntimeError, match="layer head"):
        JSWRegressor()(xb, return_layers=True)
