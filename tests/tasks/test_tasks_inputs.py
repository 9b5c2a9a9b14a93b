"""Input validation of :mod:`lsn_fast.tasks`: bad input is a ValueError/TypeError raised by
lsn_fast itself, whose message starts with the offending argument's name; valid input keeps
working. Everything is tiny (32x32 images, batch <= 4, steps <= 3)."""

import math

import pytest
import torch

import lsn_fast as lf
from lsn_fast.tasks import jsn as J
from lsn_fast.tasks import svdh as S

T = lf.tasks
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def x():
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def pair():
    st, _ = lf.phantom.generate(4, size=32, spacing_mm=0.2, seed=2)
    img = lf.compose(st, detector=lf.Detector(), seed=2)
    return img[:2], img[2:]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"jsw": T.JSWRegressor(), "svdh": T.SvdHClassifier(), "jsn": T.SiameseJSN()}


# ----------------------------------------------------------------------------- 1. non-finite labels
def test_train_jsn_model_rejects_nan_labels(x):
    with pytest.raises(ValueError, match="^jsn_mm"):
        T.train_jsn_model(x, x, torch.full((4,), NAN), steps=2, batch_size=4, restarts=0)
    with pytest.raises(ValueError, match="^jsn_mm"):
        T.train_jsn_model(x, x, [0.1, INF, 0.2, 0.3], steps=2, batch_size=4, restarts=0)


@pytest.mark.parametrize("kind", ["tuple", "list", "function"])
def test_train_jsw_regressor_checks_source_batches(x, kind):
    bad = torch.full((4,), NAN)
    src = {"tuple": (x, bad), "list": [(x, bad, {})], "function": lambda n, g: (x[:n], bad[:n])}[kind]
    with pytest.raises(ValueError, match="^source"):
        T.train_jsw_regressor(source=src, steps=2, batch_size=4)


def test_train_jsn_model_checks_source_batches(x):
    with pytest.raises(ValueError, match="^source"):
        T.train_jsn_model(source=lambda n, g: (x[:n], x[:n], torch.full((n,), NAN)), steps=1, batch_size=4, restarts=0)
    with pytest.raises(ValueError, match="^source"):  # follow-ups of another size
        T.train_jsn_model(source=(x, x[:, :, :16, :16], torch.zeros(4)), steps=1, batch_size=4, restarts=0)
    with pytest.raises(ValueError, match="^source"):  # NaN images
        T.train_jsn_model(source=[(x * NAN, x, torch.zeros(4))], steps=1, batch_size=4)


def test_source_label_count_and_type(x):
    with pytest.raises(ValueError, match="^source"):  # one label for four images (would broadcast)
        T.train_jsw_regressor(source=lambda n, g: (x, torch.ones(1)), steps=1, batch_size=4)
    with pytest.raises(TypeError, match="^source"):
        T.train_jsw_regressor(source=lambda n, g: (x, [1.0, 2.0, 3.0, 4.0]), steps=1, batch_size=4)
    with pytest.raises(TypeError, match="^source"):  # a batch that is not a tuple
        T.train_jsw_regressor(source=lambda n, g: x, steps=1, batch_size=4)
    with pytest.raises(ValueError, match="^source"):  # first dimensions differ
        T.train_jsw_regressor(source=(x, torch.ones(3)), steps=1, batch_size=4)


# ----------------------------------------------------------------------------- 2. SvdH grades
def test_train_svdh_classifier_rejects_fractional_grades(x):
    with pytest.raises(ValueError, match="^grades"):
        T.train_svdh_classifier(x, torch.tensor([0.5, 1.5, 2.7, 3.9]), steps=1, batch_size=2)
    with pytest.raises(ValueError, match="^grades"):
        T.train_svdh_classifier(x, torch.tensor([0.0, 1.0, NAN, 3.0]), steps=1, batch_size=2)
    with pytest.raises(ValueError, match="^grades"):
        T.train_svdh_classifier(x, torch.tensor([0, 1, 2, -1]), steps=1, batch_size=2)


def test_train_svdh_classifier_checks_source_grades(x):
    with pytest.raises(ValueError, match="^source"):
        T.train_svdh_classifier(source=lambda n, g: (x[:n], torch.tensor([0, 1, 2, 7])[:n]), steps=1, batch_size=4)
    with pytest.raises(ValueError, match="^source"):
        T.train_svdh_classifier(source=(x, torch.tensor([0.0, 1.5, 2.0, 3.0])), steps=1, batch_size=2)


def test_train_svdh_classifier_model_must_have_five_classes(x):
    with pytest.raises(ValueError, match="^model"):
        T.train_svdh_classifier(x, torch.tensor([0, 1, 2, 3]), model=T.SvdHClassifier(num_classes=3), steps=1)
    with pytest.raises(TypeError, match="^model"):
        T.train_svdh_classifier(x, torch.tensor([0, 1, 2, 3]), model=T.JSWRegressor(), steps=1)


# ----------------------------------------------------------------------------- 3. thresholds
@pytest.mark.parametrize("th", [(0.1, 0.2, NAN, 0.9), (0.1, 0.2, 0.3, INF), (-INF, 0.2, 0.3, 0.9)])
def test_svdh_grade_rejects_non_finite_thresholds(th):
    with pytest.raises(ValueError, match="^thresholds"):
        T.svdh_grade(1.0, 2.0, th)


def test_svdh_grade_threshold_shape_and_type():
    with pytest.raises(ValueError, match="^thresholds"):
        T.svdh_grade(1.0, 2.0, [[0.1, 0.2], [0.3, 0.9]])
    with pytest.raises(ValueError, match="^thresholds"):
        T.svdh_grade(1.0, 2.0, (0.1, 0.2, 0.9))
    with pytest.raises(TypeError, match="^thresholds"):
        T.svdh_grade(1.0, 2.0, "0.1,0.2")
    with pytest.raises(TypeError, match="^jsw_mm"):
        T.svdh_grade("1 mm", 2.0)


# ----------------------------------------------------------------------------- 4. batch_size
@pytest.mark.parametrize("bs", [0, -1])
def test_predict_batch_size(x, models, pair, bs):
    with pytest.raises(ValueError, match="^batch_size"):
        T.predict_jsw(models["jsw"], x, batch_size=bs)
    with pytest.raises(ValueError, match="^batch_size"):
        T.predict_svdh(models["svdh"], x, batch_size=bs)
    b, f = pair
    with pytest.raises(ValueError, match="^batch_size"):
        T.quantify_jsn(b, f, method="learned", model=models["jsn"], batch_size=bs)


def test_batch_size_type(x, models):
    with pytest.raises(TypeError, match="^batch_size"):
        T.predict_jsw(models["jsw"], x, batch_size=2.0)
    with pytest.raises(TypeError, match="^batch_size"):
        T.train_jsw_regressor(x, torch.ones(4), steps=1, batch_size=True)


def test_five_percent_checks_batch_size_up_front():
    from lsn_fast.experiments.five_percent import FivePercentConfig

    with pytest.raises(ValueError, match="^batch_size"):
        T.run_five_percent(config=FivePercentConfig.tiny(), batch_size=0, out_dir=None, log=lambda *a: None)


# ----------------------------------------------------------------------------- 5. model argument
def test_predict_and_evaluate_need_a_module(x, pair):
    with pytest.raises(TypeError, match="^model"):
        T.predict_jsw(None, x)
    with pytest.raises(TypeError, match="^model"):
        T.predict_svdh(None, x)
    with pytest.raises(TypeError, match="^model"):
        T.evaluate_jsw(None, x, torch.ones(4))
    with pytest.raises(TypeError, match="^model"):
        T.evaluate_svdh(None, x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="^model"):
        J.output_fit(None, lambda n, g: (x[:n], x[:n], torch.rand(n)))
    b, f = pair
    with pytest.raises(TypeError, match="^model"):
        T.quantify_jsn(b, f, method="learned", model="siamese.pt")


def test_predict_rejects_a_model_of_another_task(x, models):
    with pytest.raises(ValueError, match="^model"):  # logits (B,5), not one JSW per image
        T.predict_jsw(models["svdh"], x)
    with pytest.raises(ValueError, match="^model"):  # (B,), not logits
        T.predict_svdh(models["jsw"], x)


def test_evaluate_checks_labels(x, models):
    with pytest.raises(ValueError, match="^jsw"):
        T.evaluate_jsw(models["jsw"], x, torch.tensor([1.0, NAN, 1.0, 1.0]))
    with pytest.raises(ValueError, match="^grades"):
        T.evaluate_svdh(models["svdh"], x, torch.tensor([0, 1, 2, 9]))


# ----------------------------------------------------------------------------- 6. trainer arguments
def test_trainer_source_empty_or_short(x):
    with pytest.raises(ValueError, match="^source"):
        T.train_jsw_regressor(source=[], steps=1)
    with pytest.raises(ValueError, match="^source"):
        T.train_jsw_regressor(source=(x,), steps=1)
    with pytest.raises(ValueError, match="^source"):
        T.train_jsw_regressor(source=iter([]), steps=1)
    with pytest.raises(ValueError, match="^source"):  # a one-shot iterator that runs out
        T.train_jsw_regressor(source=iter([(x, torch.ones(4))]), steps=2)
    with pytest.raises(TypeError, match="^source"):
        T.train_jsw_regressor(source=(x, [1.0, 2.0, 3.0, 4.0]), steps=1)
    with pytest.raises(TypeError, match="^source"):
        T.train_jsw_regressor(source=x, steps=1)
    with pytest.raises(ValueError, match="^source"):
        T.train_jsn_model(source=(x, x), steps=1, restarts=0)


@pytest.mark.parametrize("trainer", ["jsw", "svdh", "jsn"])
def test_trainer_augment_model_device(x, trainer):
    y = {"jsw": torch.ones(4), "svdh": torch.tensor([0, 1, 2, 3]), "jsn": torch.zeros(4)}[trainer]
    fn = {"jsw": T.train_jsw_regressor, "svdh": T.train_svdh_classifier, "jsn": T.train_jsn_model}[trainer]
    data = (x, x, y) if trainer == "jsn" else (x, y)
    wrong = T.SvdHClassifier() if trainer != "svdh" else T.JSWRegressor()
    with pytest.raises(TypeError, match="^augment"):
        fn(*data, augment="yes", steps=1, batch_size=2)
    with pytest.raises(TypeError, match="^model"):
        fn(*data, model=wrong, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="^device"):
        fn(*data, device="not-a-device", steps=1, batch_size=2)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device: CUDA is not available"):
            fn(*data, device="cuda", steps=1, batch_size=2)
    with pytest.raises(ValueError, match="^lr"):
        fn(*data, lr=NAN, steps=1, batch_size=2)
    with pytest.raises(TypeError, match="^seed"):
        fn(*data, seed="0", steps=1, batch_size=2)
    with pytest.raises(ValueError, match="^steps"):
        fn(*data, steps=0, batch_size=2)


# ----------------------------------------------------------------------------- 7. poc_displacement
def test_poc_displacement_checks(pair):
    b, f = pair
    with pytest.raises(ValueError, match="^b"):
        T.poc_displacement(b, f[:1])
    with pytest.raises(ValueError, match="^band"):
        T.poc_displacement(b, f, band=0)
    with pytest.raises(ValueError, match="^band"):
        T.poc_displacement(b, f, band=NAN)
    with pytest.raises(ValueError, match="^window"):
        T.poc_displacement(b, f, window=torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="^window_b"):
        T.poc_displacement(b, f, window_b=torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="^window"):
        T.poc_displacement(b, f, window=torch.ones(3, 1, 32, 32))
    with pytest.raises(ValueError, match="^a"):
        T.poc_displacement(b * NAN, f)
    with pytest.raises(ValueError, match="^b"):
        T.poc_displacement(b, f * INF)
    with pytest.raises(TypeError, match="^a"):
        T.poc_displacement(b.numpy(), f)


# ----------------------------------------------------------------------------- 8. joint_line
@pytest.mark.parametrize("search", [(NAN, 0.8), (0.8, 0.2), (-0.1, 0.5), (0.2, 1.5), (0.3, 0.3)])
def test_joint_line_search(pair, search):
    with pytest.raises(ValueError, match="^search"):
        T.joint_line(pair[0], search=search)


def test_joint_line_search_and_bands_types(pair):
    with pytest.raises(TypeError, match="^search"):
        T.joint_line(pair[0], search=0.5)
    with pytest.raises(TypeError, match="^search"):
        T.joint_line(pair[0], search=("a", "b"))
    with pytest.raises(ValueError, match="^bands"):
        T.joint_line(pair[0], bands=0)


# ----------------------------------------------------------------------------- 9. quantify_jsn
def test_quantify_jsn_band_and_axis(pair):
    b, f = pair
    with pytest.raises(TypeError, match="^band"):
        T.quantify_jsn(b, f, band="wide")
    with pytest.raises(ValueError, match="^band"):
        T.quantify_jsn(b, f, band=INF)
    for bad in (NAN, INF):
        with pytest.raises(ValueError, match="^axis"):
            T.quantify_jsn(b, f, axis=bad)
    with pytest.raises(ValueError, match="^axis"):
        T.quantify_jsn(b, f, axis=(NAN, 1.0))
    with pytest.raises(TypeError, match="^axis"):
        T.quantify_jsn(b, f, axis="up")
    with pytest.raises(ValueError, match="^refine"):
        T.quantify_jsn(b, f, refine=True)


# ----------------------------------------------------------------------------- valid inputs still work
def test_valid_training_inputs_still_work(x):
    y = torch.linspace(0.5, 2.0, 4)
    m = T.train_jsw_regressor(x, y.tolist(), steps=1, batch_size=2)
    assert bool(torch.isfinite(T.predict_jsw(m, x, batch_size=1)).all())
    m = T.train_jsw_regressor(source=[(x[:2], y[:2], {}), (x[2:], y[2:].double(), {})], steps=3, batch_size=2)
    m = T.train_jsw_regressor(source=(x, y), model=m, steps=1, batch_size=2, device="cpu",
                              augment=lambda batch, g: batch)
    assert set(T.evaluate_jsw(m, x, y.tolist())) >= {"mae", "icc"}
    # integer grades as a float tensor and as a list were accepted before and still are
    for grades in (torch.tensor([0.0, 1.0, 2.0, 4.0]), [0, 1, 2, 4], torch.tensor([0, 1, 2, 4], dtype=torch.uint8)):
        s = T.train_svdh_classifier(x, grades, steps=1, batch_size=2)
    s = T.train_svdh_classifier(source=lambda n, g: (x[:n], torch.tensor([0.0, 3.0, 4.0, 1.0])[:n]), steps=1, batch_size=4,
                                model=s)
    assert T.predict_svdh(s, x, batch_size=3).dtype == torch.int64
    assert 0.0 <= T.evaluate_svdh(s, x, [0, 1, 2, 4])["accuracy"] <= 1.0
    j = T.train_jsn_model(x, x.flip(0), y - 1, steps=1, batch_size=2, restarts=0)
    j = T.train_jsn_model(source=(x, x.flip(0), y), model=j, steps=1, batch_size=2, seed=3)
    out = T.quantify_jsn(x, x.flip(0), 0.2, method="learned", model=j, batch_size=3)
    assert out.shape == (4,) and bool(torch.isfinite(out).all())
    spread, r = J.output_fit(j, lambda n, g: (x[:n], x.flip(0)[:n], y[:n]), n=4)
    assert math.isfinite(spread) and math.isfinite(r)


def test_valid_grading_and_poc_inputs_still_work(pair):
    g = T.svdh_grade(torch.tensor([2.0, 1.5, 1.0, 0.5, 0.1]), 2.0)
    assert g.tolist() == [0, 1, 2, 3, 4]
    assert T.svdh_grade([2.0, 0.1], 2.0, thresholds=torch.tensor([0.05, 0.2, 0.5, 0.8])).tolist() == [0, 4]
    assert T.svdh_grade(0.0, 2.0, thresholds=[0, 1, 2, 3]).tolist() == [2]
    b, f = pair
    d = T.poc_displacement(b, f)
    assert d.shape == (2, 2) and bool(torch.isfinite(d).all())
    # a known integer shift is found; band=None and an explicit window are accepted
    s = torch.roll(b, shifts=(2, -1), dims=(2, 3))
    w = torch.ones(1, 1, 32, 32)
    torch.testing.assert_close(T.poc_displacement(b, s, window=w, band=None), torch.tensor([[2.0, -1.0]] * 2),
                               atol=0.05, rtol=0)
    assert T.poc_displacement(b, s, band=1).shape == (2, 2)
    for kw in ({}, {"bands": 1, "search": (0, 1)}, {"bands": 3, "search": [0.2, 0.9]}):
        a, sl = T.joint_line(b, **kw)
        assert a.shape == sl.shape == (2,) and bool(torch.isfinite(a).all())
    for kw in ({}, {"band": None}, {"band": 1}, {"axis": 10.0}, {"axis": (1.0, 0.1)}, {"axis": torch.tensor([[1.0, 0.0]] * 2)},
               {"refine": 0}):
        out = T.quantify_jsn(b, f, 0.2, on_doubt="keep", **kw)  # two different joints: flagged, kept
        assert out.shape == (2,) and bool(torch.isfinite(out).all())
