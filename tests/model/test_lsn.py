"""The Layer Separation Network: shapes, constraints, separate(), training, checkpoints, weights."""

import json
import math
import os

import pytest
import torch

from helpers import rect_stack
from lsn_fast.physics.layers import LayerStack
from lsn_fast.model.lsn import DEFAULT_WEIGHTS, SMALL_FOV_WEIGHTS, LSN, LSNConfig, load_weights, save_weights, separate
from lsn_fast.model import train as T


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return LSN.tiny().eval()


def test_tiny_is_small():
    assert LSN.tiny().num_parameters <= 50_000


@pytest.mark.parametrize("hw", [(16, 16), (32, 48), (64, 32), (80, 96)])
def test_shapes_nonnegative_exact_recomposition(tiny, hw):
    x = torch.rand(1, 1, *hw) * 0.8
    with torch.no_grad():
        out = tiny(x)
    assert out.layers.shape == (1, 3, *hw)
    assert out.denoised.shape == (1, 1, *hw) and out.seg_logits.shape == (1, 2, *hw)
    assert bool((out.layers >= 0).all()) and bool(torch.isfinite(out.layers).all())
    torch.testing.assert_close(out.layers.sum(1, keepdim=True), out.denoised, atol=1e-5, rtol=1e-5)


def test_batch_and_gradients(tiny):
    x = torch.rand(3, 1, 32, 32)
    m = LSN.tiny()
    out = m(x)
    out.layers.sum().backward()
    assert all(p.grad is not None for p in m.head.parameters())
    with torch.no_grad():  # the batch does not mix samples (GroupNorm, per-sample attention)
        a, b = tiny(x).layers, tiny(x[1:2]).layers
    torch.testing.assert_close(a[1:2], b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(1, 1, 30, 32), (1, 1, 32, 24), (1, 1, 17, 17)])
def test_bad_sizes_rejected(tiny, shape):
    with pytest.raises(ValueError, match="images"):
        tiny(torch.rand(shape))


def test_bad_inputs_rejected(tiny):
    with pytest.raises(ValueError, match="images"):
        tiny(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="images"):
        separate(torch.rand(1, 32, 32), tiny)
    with pytest.raises(ValueError, match="images"):
        separate(torch.full((1, 1, 32, 32), float("nan")), tiny)
    with pytest.raises(ValueError, match="spacing_mm"):
        separate(torch.rand(1, 1, 32, 32), tiny, spacing_mm=-0.1)
    with pytest.raises(ValueError, match="spacing_mm"):
        separate(torch.rand(1, 1, 32, 32), tiny, spacing_mm=5.0)


def test_separate_any_size_and_spacing(tiny):
    x = torch.rand(2, 1, 50, 37) * 0.6
    st = separate(x, tiny)
    assert isinstance(st, LayerStack) and st.shape == (2, 50, 37) and st.spacing_mm == 0.1
    # the documented padding (replicate, bottom/right, to the model's multiple 16: 64x48), run by
    # hand and cropped back from the top-left: a crop from the wrong side shifts every layer
    with torch.no_grad():
        ref = tiny(torch.nn.functional.pad(x, (0, 48 - 37, 0, 64 - 50), mode="replicate")).layers[..., :50, :37]
    torch.testing.assert_close(torch.stack([st.soft, st.upper, st.lower], 1), ref)
    # other spacings are resampled to the nominal 0.1 mm before the network: 0.2 mm doubles the size
    seen = []
    hook = tiny.stem.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    try:
        separate(torch.rand(1, 1, 32, 24), tiny, spacing_mm=0.2)
        separate(torch.rand(1, 1, 64, 48), tiny, spacing_mm=0.05)
    finally:
        hook.remove()
    assert seen == [(64, 48), (32, 32)]  # 32x24 at 0.05 mm -> 32x24, padded to the multiple 16 -> 32x32
    st2 = separate(x, tiny, spacing_mm=0.15)  # resampled to 75x56 (+pad 80x64) and back
    assert st2.shape == (2, 50, 37) and st2.spacing_mm == 0.15
    for t in (st2.soft, st2.upper, st2.lower):
        assert bool((t >= 0).all()) and bool(torch.isfinite(t).all())
    # at the nominal spacing with a valid size, separate == the model's layers
    x16 = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        ref = tiny(x16).layers
    s = separate(x16, tiny)
    torch.testing.assert_close(torch.stack([s.soft, s.upper, s.lower], 1), ref)


def test_layer_metrics_psnr_and_ssim_on_known_cases():
    from lsn_fast.model.evaluate import layer_metrics

    true = torch.zeros(2, 32, 32)
    true[:, 8:24, 8:24] = torch.tensor([2.0, 0.5]).view(2, 1, 1)  # per-sample max M = 2.0, 0.5
    c = torch.tensor([0.02, 0.01]).view(2, 1, 1)
    psnr, ssim = layer_metrics(true + c, true)  # MSE/M² = (c/M)²  ->  PSNR = 20·log10(M/c)
    torch.testing.assert_close(psnr, 20 * torch.log10(torch.tensor([2.0 / 0.02, 0.5 / 0.01])), rtol=0, atol=1e-4)
    psnr, ssim = layer_metrics(true, true)
    torch.testing.assert_close(ssim, torch.ones(2), rtol=0, atol=1e-5)  # float32 SSIM of identical images
    _, ssim_noisy = layer_metrics(true + 0.2 * torch.randn(2, 32, 32, generator=torch.Generator().manual_seed(0)), true)
    assert bool((ssim_noisy < 0.9).all())


def test_config_json_roundtrip():
    c = LSNConfig.small()
    assert LSNConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="model"):
        LSNConfig.named("huge")


def test_weights_roundtrip_and_missing(tmp_path, tiny):
    p = tmp_path / "w.safetensors"
    save_weights(tiny, p)
    m = load_weights(p)
    assert m.config == tiny.config
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x).layers, tiny(x).layers)
    with pytest.raises(FileNotFoundError, match="train-lsn"):
        LSN.pretrained(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="path"):
        load_weights(bad)


def test_weights_loader_errors_name_the_argument(tmp_path, tiny):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    p = tmp_path / "w.safetensors"
    save_weights(tiny, p)
    with pytest.raises(ValueError, match="^map_location"):  # was blamed on `path`
        load_weights(p, map_location="bogus")
    state = load_file(p)
    with safe_open(p, "pt") as f:
        meta = f.metadata()
    name = next(k for k, t in state.items() if t.is_floating_point())
    cases = {
        "nan": ({**state, name: torch.full_like(state[name], float("nan"))}, meta, "NaN or Inf"),
        "shape": ({**state, name: torch.zeros(3, 3)}, meta, "does not match its config"),  # was torch's RuntimeError
        "config": (state, {**meta, "lsn_config": "{not json"}, "invalid 'lsn_config'"),  # was JSONDecodeError
    }
    for label, (sd, md, msg) in cases.items():
        q = tmp_path / f"{label}.safetensors"
        save_file(sd, str(q), metadata=md)
        with pytest.raises(ValueError, match=f"^path: .*{msg}"):
            load_weights(q)
    with pytest.raises(ValueError, match="heads"):  # was ZeroDivisionError
        LSNConfig(heads=0)
    with pytest.raises(TypeError, match="groups"):
        LSNConfig(groups=2.5)


@pytest.mark.skipif(not os.path.isfile(DEFAULT_WEIGHTS), reason="shipped weights missing")
def test_pretrained_loads_and_is_finite():
    m = LSN.pretrained()
    import lsn_fast as lf

    st, _ = lf.phantom.generate(1, size=64, seed=123)
    img = lf.compose(st, detector=lf.Detector(), seed=1)
    out = separate(img, m)
    for t in (out.soft, out.upper, out.lower):
        assert bool(torch.isfinite(t).all()) and bool((t >= 0).all())
    torch.testing.assert_close(out.attenuation(), m(img).denoised[:, 0].detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not os.path.isfile(SMALL_FOV_WEIGHTS), reason="shipped small-fov weights missing")
def test_shipped_weights_by_name():
    """LSN.pretrained and separate take the shipped names: "default" is the default file,
    "small-fov" another network; on a 128 px phantom the small-fov weights recompose closer to
    the clean attenuation than the default ones (the reason they ship); unknown names and
    wrong types are refused, naming the argument."""
    import lsn_fast as lf

    torch.set_num_threads(1)
    d, small = LSN.pretrained("default"), LSN.pretrained("small-fov")
    ref = LSN.pretrained()
    assert all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), ref.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(small.state_dict().values(), ref.state_dict().values()))
    st, _ = lf.phantom.generate(2, size=128, seed=4321)
    img = lf.compose(st, detector=lf.Detector(n0=1e4, blur_sigma_px=0.8), seed=3)
    err = {}
    for name in ("default", "small-fov"):
        out = separate(img, name)
        torch.testing.assert_close(out.attenuation(), separate(img, LSN.pretrained(name)).attenuation())
        err[name] = float((out.attenuation() - st.attenuation()).norm() / st.attenuation().norm())
    assert err["small-fov"] < err["default"], err
    with pytest.raises(ValueError, match="model"):
        separate(img, "large-fov")
    with pytest.raises(TypeError, match="model"):
        separate(img, 3)
    with pytest.raises(FileNotFoundError):
        LSN.pretrained("no-such-weights")


@pytest.mark.skipif(not os.path.isfile(DEFAULT_WEIGHTS), reason="shipped weights missing")
def test_float32_tail_under_bf16_autocast():
    """set_float32_tail runs the head and the refiner in float32 under bf16 autocast (their
    convolutions compute and return float32), which brings the denoised image closer to the float32 one
    than all-bf16; without autocast it changes nothing. FastSeparator exposes it and honours an
    explicit bf16 dtype on the CPU; a bad dtype is refused."""
    import lsn_fast as lf
    from lsn_fast.model.inference import FastSeparator

    torch.set_num_threads(1)
    m = LSN.pretrained().eval()
    st, _ = lf.phantom.generate(2, size=128, seed=321)
    img = lf.compose(st, detector=lf.Detector(n0=2e4, blur_sigma_px=0.7), seed=2)
    seen = {}
    hooks = [mod.register_forward_hook(lambda mod, a, out, k=k: seen.__setitem__(k, out.dtype) or None)
             for k, mod in (("head", m.head), ("refine", m.refine.net[0]), ("stem", m.stem))]

    def run(bf, tail):
        m.set_float32_tail(tail)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
            return m(img).denoised

    ref = run(False, False)
    torch.testing.assert_close(run(False, True), ref, atol=0, rtol=0)
    all_bf16 = run(True, False)
    assert seen == {"head": torch.bfloat16, "refine": torch.bfloat16, "stem": torch.bfloat16}
    tail = run(True, True)
    assert seen == {"head": torch.float32, "refine": torch.float32, "stem": torch.bfloat16}
    for h in hooks:
        h.remove()
    err = lambda d: float((d - ref).norm() / ref.norm())  # noqa: E731
    assert err(tail) < 0.6 * err(all_bf16), (err(tail), err(all_bf16))
    m.set_float32_tail(False)
    fast = FastSeparator(m, 2, 128, 128, fused=False, dtype=torch.bfloat16, float32_tail=True, channels_last=False)
    assert fast.dtype == torch.bfloat16 and m.float32_tail
    torch.testing.assert_close(fast(img).denoised, tail, atol=1e-5, rtol=1e-5)
    assert FastSeparator(m, 1, 128, 128, fused=False).dtype is None  # "auto" on the CPU: float32
    with pytest.raises(ValueError, match="dtype"):
        FastSeparator(m, 1, 128, 128, fused=False, dtype="bf16")


# ------------------------------------------------------------------------------ training
def _cfg(**kw):
    base = dict(steps=6, crop=32, batch=2, pool=3, phantom_size=64, model="tiny", progress=False, warmup=2, lr=3e-3, seed=5)
    base.update(kw)
    return T.TrainConfig(**base)


def test_training_decreases_loss_and_is_deterministic():
    torch.set_num_threads(1)
    cfg = _cfg(steps=12)
    a = T.train(cfg)
    b = T.train(cfg)
    la, lb = [h["loss"] for h in a.history], [h["loss"] for h in b.history]
    assert la == lb  # same seed, same numbers
    assert sum(la[-3:]) / 3 < sum(la[:3]) / 3
    c = T.train(_cfg(steps=3, seed=6))
    assert [h["loss"] for h in c.history] != la[:3]


@pytest.mark.filterwarnings("ignore:amp.*emulated:RuntimeWarning")  # CI's CPU may lack native bf16
def test_cpu_bf16_autocast_option():
    """amp="bf16" runs the forward pass in bf16 on the CPU (the default "auto" does not), stays
    deterministic and trains; the head and the losses stay float32; a bad mode is refused."""
    torch.set_num_threads(1)
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 8, 8)
    dev = torch.device("cpu")
    for amp, want in (("auto", torch.float32), ("off", torch.float32), ("bf16", torch.bfloat16)):
        with T._autocast(dev, amp):
            assert conv(x).dtype == want, amp
    cfg = _cfg(steps=12, amp="bf16")
    a, b = T.train(cfg), T.train(cfg)
    la = [h["loss"] for h in a.history]
    assert la == [h["loss"] for h in b.history]
    assert all(math.isfinite(v) for v in la) and sum(la[-3:]) / 3 < sum(la[:3]) / 3
    assert la != [h["loss"] for h in T.train(_cfg(steps=12)).history]  # it did change the arithmetic
    tail = T.train(_cfg(steps=3, amp="bf16", float32_tail=True))  # the head in float32: other numbers again
    assert tail.model.float32_tail and [h["loss"] for h in tail.history] != la[:3]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = a.model(torch.rand(1, 1, 32, 32), validate=False)
    assert out.layers.dtype == out.denoised.dtype == torch.float32
    with pytest.raises(ValueError, match="amp"):
        _cfg(amp="fp16").validate()


def test_cpu_bf16_without_native_support_warns(monkeypatch):
    """amp="bf16" on a CPU that would emulate bf16 warns, naming the argument and the way out;
    float32 and a CPU with native bf16 do not warn."""
    import warnings

    assert isinstance(T.cpu_has_native_bf16(), bool)  # the real probe answers on this machine
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="amp.*--amp off"):
        T.Trainer(_cfg(steps=1, amp="bf16"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        T.Trainer(_cfg(steps=1, amp="off"))
        monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: True)
        T.Trainer(_cfg(steps=1, amp="bf16"))


def test_checkpoint_resume_equals_continuing(tmp_path):
    torch.set_num_threads(1)
    full = T.train(_cfg(steps=4))
    out = str(tmp_path / "run")
    T.train(_cfg(steps=2, out=out))
    assert os.path.isfile(os.path.join(out, "ckpt.safetensors")) and os.path.isfile(os.path.join(out, "state.json"))
    resumed = T.train(_cfg(steps=4, out=out, resume=True))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history[2:]]
    for (k, v), (_, w) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(v, w), k
    m = LSN.pretrained(os.path.join(out, "model.safetensors"))  # the weights-only file loads
    assert m.config == LSNConfig.tiny()


def test_stop_at_follows_the_full_schedule_and_resumes(tmp_path):
    # a run cut off at step N (as --max-minutes does) is reproduced by one command with --stop-at N
    torch.set_num_threads(1)
    full = T.train(_cfg(steps=8, ema=0.9))
    out = str(tmp_path / "run")
    cut = T.train(_cfg(steps=8, out=out, ema=0.9), stop_at=5)
    assert cut.step_idx == 5 and len(cut.history) == 5
    assert [(h["loss"], h["lr"]) for h in cut.history] == [(h["loss"], h["lr"]) for h in full.history[:5]]
    short = T.train(_cfg(steps=5, ema=0.9))  # a 5-step schedule decays its lr sooner: not the same run
    assert [h["lr"] for h in short.history] != [h["lr"] for h in cut.history]
    state = json.load(open(os.path.join(out, "state.json")))
    assert state["step"] == 5
    rest = T.train(_cfg(steps=8, out=out, ema=0.9, resume=True))
    for name, v in full.ema.items():
        assert torch.equal(v, rest.ema[name]), name
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="stop_at"):
            T.train(_cfg(steps=8), stop_at=bad)


def test_alt_phantom_size_interleaves_small_whole_phantoms(tmp_path):
    # every alt_every-th step trains on whole alt_phantom_size px phantoms of a second pool
    torch.set_num_threads(1)
    kw = dict(steps=6, crop=64, phantom_size=64, alt_phantom_size=32, alt_every=3)
    full = T.train(_cfg(**kw))
    assert [h["size"] for h in full.history] == [64, 64, 32, 64, 64, 32]
    plain = T.train(_cfg(steps=6, crop=64, phantom_size=64))
    assert "size" not in plain.history[0]
    # the steps before the first alt step are the plain run's (the main stream is untouched)
    assert [h["loss"] for h in full.history[:2]] == [h["loss"] for h in plain.history[:2]]
    assert full.history[2]["loss"] != plain.history[2]["loss"]
    # other phantoms than the main pool's at another size: its own seed
    cfg = full.cfg
    alt = T.stage1_batch(full.alt_pool, 2, cfg, "cpu")["layers"]
    same_seed = T.PhantomPool(cfg.seed, cfg.pool, 32, cfg.refresh)
    assert alt.shape == (cfg.batch, 3, 32, 32)
    assert not torch.equal(alt, T.stage1_batch(same_seed, 2, cfg, "cpu")["layers"])
    # resumable: the alt pool is rebuilt from the step
    out = str(tmp_path / "run")
    T.train(_cfg(out=out, **{**kw, "steps": 6}), stop_at=4)
    rest = T.train(_cfg(out=out, resume=True, **kw))
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history[4:]]
    for bad, match in (({"alt_phantom_size": 40}, "alt_phantom_size"), ({"alt_phantom_size": 16}, "alt_phantom_size"),
                       ({"alt_phantom_size": 32, "alt_every": 0}, "alt_every"),
                       ({"alt_phantom_size": 32, "stage": 2, "data": "x"}, "alt_phantom_size")):
        with pytest.raises(ValueError, match=match):
            _cfg(**bad).validate()


def test_ema_checkpoint_resume_and_log(tmp_path):
    torch.set_num_threads(1)
    full = T.train(_cfg(steps=4, ema=0.9))
    assert full.ema is not None
    # the EMA weights differ from the raw ones
    k = "head.weight"
    assert not torch.equal(full.ema[k], full.model.state_dict()[k])
    out = str(tmp_path / "run")
    T.train(_cfg(steps=2, out=out, ema=0.9, log_every=1))
    resumed = T.train(_cfg(steps=4, out=out, resume=True, ema=0.9, log_every=1))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history[2:]]
    for name, v in full.ema.items():
        assert torch.equal(v, resumed.ema[name]), name
    m = LSN.pretrained(os.path.join(out, "model.safetensors"))  # holds the EMA weights
    torch.testing.assert_close(m.state_dict()[k], full.ema[k])
    raw = LSN.pretrained(os.path.join(out, "model_raw.safetensors"))
    torch.testing.assert_close(raw.state_dict()[k], full.model.state_dict()[k])
    import json

    with open(os.path.join(out, "log.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="resume"):  # a checkpoint without EMA cannot resume with --ema
        out2 = str(tmp_path / "run2")
        T.train(_cfg(steps=2, out=out2))
        T.train(_cfg(steps=4, out=out2, resume=True, ema=0.9))
    with pytest.raises(ValueError, match="ema"):
        _cfg(ema=1.0).validate()


def _equivariant_separator(c=0.3, split=20):
    """An exactly shift-equivariant rule-based separator for stacks with constant soft tissue c,
    the upper bone above row ``split`` and the lower one below."""

    def sep(img):
        x = img[:, 0]
        soft = x.clamp(max=c)
        bone = x - soft
        rows = torch.arange(x.shape[-2]).view(1, -1, 1)
        return torch.stack([soft, bone * (rows < split), bone * (rows >= split)], 1)

    return sep


def test_shift_consistency_loss_zero_for_equivariant_separator():
    st = rect_stack(B=2, H=48, W=40, gap_px=8.0)
    layers = torch.stack([torch.full_like(st.soft, 0.3), st.upper, st.lower], 1)
    sep = _equivariant_separator()
    torch.testing.assert_close(sep(layers.sum(1, keepdim=True)), layers)  # it separates exactly
    shift = torch.tensor([1.0, 3.0])
    loss = T.shift_consistency_loss(layers, sep, shift)
    assert float(loss) < 1e-6
    # a separator that ignores the shift is penalized
    frozen = lambda img: layers  # noqa: E731
    assert float(T.shift_consistency_loss(layers, frozen, shift)) > 1e-3


def test_stage2_step_runs(tmp_path):
    torch.set_num_threads(1)
    d = tmp_path / "s2"
    T.write_demo_stage2_data(str(d), n=2, size=64, seed=3)
    imgs, masks = T.load_stage2_folder(str(d))
    assert imgs.shape == (2, 1, 64, 64) and masks.shape == (2, 2, 64, 64)
    tr = T.train(_cfg(stage=2, steps=2, data=str(d), out=str(tmp_path / "r2")))
    rec = tr.history[-1]
    assert all(k in rec for k in ("recon", "seg", "shift", "adv", "disc"))
    assert all(torch.isfinite(torch.tensor(v)) for v in rec.values())
    with pytest.raises(ValueError, match="data"):
        T.TrainConfig(stage=2, data=None).validate()


def test_stage2_teacher_target_and_anchor(tmp_path):
    """recon_target='teacher' reconstructs towards the frozen initial model's denoised image; the
    teacher never changes; the anchor term is its L1 distance; bad options are refused."""
    torch.set_num_threads(1)
    d = tmp_path / "s2"
    T.write_demo_stage2_data(str(d), n=2, size=64, seed=3)
    tr = T.Trainer(_cfg(stage=2, steps=2, data=str(d), recon_target="teacher", anchor=0.5))
    before = {k: v.clone() for k, v in tr.teacher.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())  # starts as the model
    tr.step()
    rec = tr.step()
    assert "anchor" in rec and rec["anchor"] > 0  # the model moved away from the teacher
    assert all(torch.equal(before[k], v) for k, v in tr.teacher.state_dict().items())  # the teacher did not
    # the "recon" term is measured against the teacher's denoised image, not the input
    batch, g = T.stage2_batch(tr.images, tr.masks, 0, tr.cfg, tr.device)
    _, terms, _ = T.stage2_losses(tr.model, None, batch, g, teacher=tr.teacher, recon_target="teacher")
    with torch.no_grad():
        P = tr.model(batch["image"], validate=False).layers
        want = T.LOSS_SCALE * (T.recompose(P) - tr.teacher(batch["image"], validate=False).denoised).abs().mean()
    assert terms["recon"] == pytest.approx(float(want), rel=1e-5)
    assert T.Trainer(_cfg(stage=2, steps=1, data=str(d), recon_target="input")).teacher is None  # no teacher needed
    with pytest.raises(ValueError, match="recon_target"):
        _cfg(recon_target="clean").validate()
    with pytest.raises(ValueError, match="anchor"):
        _cfg(anchor=-1.0).validate()
    with pytest.raises(ValueError, match="teacher"):
        T.stage2_losses(tr.model, None, batch, g, recon_target="teacher")


def test_stage2_transfer_experiment_tiny(tmp_path):
    """The stage2-transfer experiment runs end to end at tiny size, and its step-0 scores are
    those of the initial weights on its own held-out set, recomputed here independently."""
    import json

    from lsn_fast.cli.main import main
    from lsn_fast.model.evaluate import score
    from lsn_fast.physics.jsw import measure_jsw
    from lsn_fast.model.lsn import LSN, save_weights, separate
    from lsn_fast.experiments.stage2_transfer import shifted_setting

    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    save_weights(LSN.tiny(), init)
    out = tmp_path / "s2"
    rc = main(["experiment", "stage2-transfer", "--init", str(init), "--steps", "2", "--eval-every", "1",
               "--n-train", "3", "--n-test", "2", "--size", "64", "--crop", "32", "--batch", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["curves"]) == {"stage2", "control_stage1"}
    assert [p["step"] for p in res["curves"]["stage2"]] == [0, 1, 2]
    assert (out / "results.md").exists() and (out / "curves.png").exists() and (out / "stage2_model.safetensors").exists()
    truth, images, masks = shifted_setting(2, 64, seed=778)
    assert masks.shape == (2, 2, 64, 64) and set(masks.unique().tolist()) <= {0.0, 1.0}
    model = load_weights(init)
    pred = separate(images, model, truth.spacing_mm)
    want = score(pred, truth, measure_jsw(truth), images)
    assert res["curves"]["stage2"][0]["bone_psnr_db"] == pytest.approx(want["bone_psnr_db"], rel=1e-6)
    # stage 2 trained: its saved weights moved away from the initial ones
    after = load_weights(out / "stage2_model.safetensors").state_dict()
    moved = max(float((after[k] - v).abs().max()) for k, v in model.state_dict().items())
    assert moved > 0


def test_loss_weights_override_and_validation():
    """--loss-weight: a term's weight enters the total exactly; unknown terms and bad weights are named."""
    torch.set_num_threads(1)
    cfg = _cfg(steps=1)
    tr = T.Trainer(cfg)
    batch = T.stage1_batch(tr.pool, 0, cfg, "cpu")
    model = tr.model.eval()  # eval: no dropout-like randomness between the two calls
    base, terms = T.stage1_losses(model, batch)
    assert terms["recon_rel"] > 0  # computed, weight 0 by default
    more, terms2 = T.stage1_losses(model, batch, {"recon_rel": 2.0, "seg": 0.0})
    base = float(base.detach())
    expected = base + 2.0 * terms["recon_rel"] - T.STAGE1_LOSS_WEIGHTS["seg"] * terms["seg"]
    assert abs(float(more.detach()) - expected) < 1e-4 * max(1.0, abs(expected))
    # recon_rel is the evaluation's relative L2 recomposition error (x LOSS_SCALE)
    with torch.no_grad():
        out = model(batch["image"], validate=False)
    clean = batch["layers"].sum(1)
    rec = out.layers.sum(1)
    rel = ((rec - clean).flatten(1).norm(dim=1) / clean.flatten(1).norm(dim=1)).mean()
    assert abs(terms["recon_rel"] - T.LOSS_SCALE * float(rel)) < 1e-4
    with pytest.raises(ValueError, match="loss_weights.*'foo'"):
        _cfg(loss_weights={"foo": 1.0}).validate()
    with pytest.raises(ValueError, match="loss_weights.*'recon'"):
        _cfg(loss_weights={"recon": -1.0}).validate()
    with pytest.raises(ValueError, match="loss_weights.*'shift'"):
        _cfg(loss_weights={"shift": 1.0}).validate()  # a stage-2 term on stage 1


@pytest.mark.parametrize("setting", ["shifted", "ra"])
def test_unseen_settings_scale_the_phantom_layers(setting):
    """Each stage-2 setting is the same phantom geometry with its bone / soft layers scaled per
    sample inside the setting's stated ranges; unknown names are rejected."""
    from lsn_fast.physics.phantom import generate
    from lsn_fast.experiments.stage2_transfer import SETTINGS, shifted_setting

    spec = SETTINGS[setting]
    truth, images, masks = shifted_setting(3, 64, seed=41, setting=setting)
    base, _ = generate(3, size=64, seed=41, tilt_deg=spec["tilt_deg"])
    for name, key in (("upper", "bone"), ("lower", "bone"), ("soft", "soft")):
        t, b = getattr(truth, name), getattr(base, name)
        sel = b > 1e-3
        ratio = torch.stack([(t[i][sel[i]] / b[i][sel[i]]).mean() for i in range(3)])
        lo, hi = spec[key]
        assert bool((ratio >= lo - 1e-4).all() and (ratio <= hi + 1e-4).all()), (name, ratio)
    assert images.shape == (3, 1, 64, 64) and masks.shape == (3, 2, 64, 64)
    with pytest.raises(ValueError, match="setting"):
        shifted_setting(1, 32, setting="nope")


def test_bone_and_soft_scale_randomization():
    """--bone-scale / --soft-scale multiply exactly the bone / soft layers of the same crops; the
    default (1, 1) draws nothing extra (old recipes keep their data); bad ranges are named."""
    cfg0 = _cfg()
    pool = T.PhantomPool(cfg0.seed, cfg0.pool, cfg0.phantom_size, cfg0.refresh)
    base = T.stage1_batch(pool, 3, cfg0, "cpu")["layers"]
    again = T.stage1_batch(pool, 3, _cfg(bone_scale=(1.0, 1.0), soft_scale=(1.0, 1.0)), "cpu")["layers"]
    assert torch.equal(base, again)
    fixed = T.stage1_batch(pool, 3, _cfg(bone_scale=(2.0, 2.0), soft_scale=(0.5, 0.5)), "cpu")["layers"]
    torch.testing.assert_close(fixed[:, 1:], 2.0 * base[:, 1:], rtol=1e-6, atol=0)
    torch.testing.assert_close(fixed[:, 0], 0.5 * base[:, 0], rtol=1e-6, atol=0)
    rnd = T.stage1_batch(pool, 3, _cfg(batch=6, bone_scale=(0.5, 1.5)), "cpu")["layers"]
    ref = T.stage1_batch(pool, 3, _cfg(batch=6), "cpu")["layers"]
    ratio = rnd[:, 1:].sum((1, 2, 3)) / ref[:, 1:].sum((1, 2, 3)).clamp_min(1e-9)
    assert bool(((ratio >= 0.5 - 1e-5) & (ratio <= 1.5 + 1e-5)).all()) and float(ratio.std()) > 0
    for bad in ((0.0, 1.0), (2.0, 1.0), (1.0,)):
        with pytest.raises(ValueError, match="bone_scale"):
            _cfg(bone_scale=bad).validate()


def test_laplacian_loss_term_sees_texture_that_the_others_barely_do():
    """The stage-1 ``lap`` term is LOSS_SCALE × mean |Δ(pred) − Δ(true)| (5-point stencil, hand
    check): a ±0.01 checkerboard error gives 8 × 0.01, a constant offset nothing; it is off by
    default and enters the total with its weight."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 9, 11, generator=g), torch.rand(2, 3, 9, 11, generator=g)
    lap = lambda t: (t[..., :-2, 1:-1] + t[..., 2:, 1:-1] + t[..., 1:-1, :-2] + t[..., 1:-1, 2:]  # noqa: E731
                     - 4 * t[..., 1:-1, 1:-1])
    assert abs(float(T._lap_l1(a, b)) - float((lap(a) - lap(b)).abs().mean())) < 1e-6
    yy, xx = torch.meshgrid(torch.arange(9), torch.arange(11), indexing="ij")
    checker = 0.01 * (2.0 * ((yy + xx) % 2) - 1.0)
    assert abs(float(T._lap_l1(a + checker, a)) - 0.08) < 1e-5  # |Δ checker| = 8 × 0.01
    assert float(T._lap_l1(a + 0.01, a)) < 1e-6  # a constant offset has no texture
    cfg = _cfg(steps=1)
    tr = T.Trainer(cfg)
    batch = T.stage1_batch(tr.pool, 0, cfg, "cpu")
    base, terms = T.stage1_losses(tr.model.eval(), batch)
    assert terms["lap"] > 0 and T.STAGE1_LOSS_WEIGHTS["lap"] == 0.0
    more, _ = T.stage1_losses(tr.model.eval(), batch, {"lap": 3.0})
    assert abs(float(more - base) - 3.0 * terms["lap"]) < 1e-4 * max(1.0, float(more))


def test_bone_masks_channel_order_and_threshold():
    """``bone_masks``: (soft, upper, lower) layers -> masks (upper, lower), each ``layer >
    threshold``: hand-placed bones in the top and bottom rows of a 4×3 field, soft tissue
    everywhere (never a mask), one value exactly at the threshold (not bone)."""
    layers = torch.zeros(2, 3, 4, 3)
    layers[:, 0] = 0.3  # soft tissue everywhere
    layers[:, 1, 0] = 0.5  # upper bone: row 0
    layers[:, 2, 3] = 0.2  # lower bone: row 3
    layers[:, 1, 1, 0] = T.MASK_THRESHOLD  # at the threshold: not bone
    layers[1, 2, 2, 2] = 2 * T.MASK_THRESHOLD  # sample 1 only: a lower-bone pixel in row 2
    up = torch.zeros(4, 3)
    up[0] = 1.0
    low = torch.zeros(4, 3)
    low[3] = 1.0
    low1 = low.clone()
    low1[2, 2] = 1.0
    m = T.bone_masks(layers)
    assert m.shape == (2, 2, 4, 3) and m.dtype == torch.float32
    assert torch.equal(m[0, 0], up) and torch.equal(m[0, 1], low)
    assert torch.equal(m[1, 0], up) and torch.equal(m[1, 1], low1)
    assert torch.equal(T.bone_masks(layers, threshold=0.3)[:, 0], up.expand(2, 4, 3))  # 0.5 > 0.3; lower's 0.2 is not
    assert float(T.bone_masks(layers, threshold=0.3)[:, 1].sum()) == 0.0


def test_grad_loss_term_hand():
    """``_grad_l1(a, b)`` = mean |∂y a − ∂y b| + mean |∂x a − ∂x b| (forward differences, each
    mean over its own (H−1)·W or H·(W−1) differences). On a 3×5 field (H ≠ W, so the axes cannot
    stand in for each other): a = 3·row + 2·col against 0 gives 3 + 2; a column ramp alone
    gives 0 + 2, a row ramp alone 3 + 0; a step between columns 1 and 2 of height 0.5 gives
    0 + 0.5·(3 differences of 12); equal inputs and constant offsets give 0."""
    yy, xx = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), indexing="ij")
    z = torch.zeros(2, 1, 3, 5)
    a = (3 * yy + 2 * xx).expand(2, 1, 3, 5)
    assert float(T._grad_l1(a, z)) == pytest.approx(5.0, abs=1e-6)
    assert float(T._grad_l1(z, a)) == pytest.approx(5.0, abs=1e-6)  # symmetric
    assert float(T._grad_l1((2 * xx).expand(2, 1, 3, 5), z)) == pytest.approx(2.0, abs=1e-6)  # dx only
    assert float(T._grad_l1((3 * yy).expand(2, 1, 3, 5), z)) == pytest.approx(3.0, abs=1e-6)  # dy only
    step = (0.5 * (xx >= 2)).expand(2, 1, 3, 5)
    assert float(T._grad_l1(step, z)) == pytest.approx(0.5 * 3 / 12, abs=1e-6)  # 3 of the 3×4 x-differences
    assert float(T._grad_l1(step.transpose(-1, -2), z.transpose(-1, -2))) == pytest.approx(0.5 * 3 / 12, abs=1e-6)
    assert float(T._grad_l1(a + 0.7, a)) == pytest.approx(0.0, abs=1e-6)


def test_bone_edge_band_and_edge_loss_term():
    """``bone_edge_band``: a 5×5 bone square in a 15×15 field gives the pixels within 2 px of its
    outline (Chebyshev distance, inside and out), built by hand here; ``recon_edge`` is the
    recomposition error inside that band relative to the whole clean image, so an error placed
    far from the bone does not count and one on the outline does; off by default."""
    layers = torch.zeros(1, 3, 15, 15)
    layers[0, 1, 5:10, 5:10] = 0.5  # upper bone: rows/cols 5..9
    band = T.bone_edge_band(layers, radius_px=2)
    yy, xx = torch.meshgrid(torch.arange(15), torch.arange(15), indexing="ij")
    # Chebyshev distance to the square's outside (>0 inside) / inside (>0 outside)
    d_out = torch.maximum(torch.maximum(5 - yy, yy - 9), torch.maximum(5 - xx, xx - 9))  # >0 outside
    inside = d_out <= 0
    depth = torch.minimum(torch.minimum(yy - 4, 10 - yy), torch.minimum(xx - 4, 10 - xx))  # 1 on the rim
    expected = torch.where(inside, depth <= 2, d_out <= 2).float()
    assert band.shape == (1, 1, 15, 15) and torch.equal(band[0, 0], expected)
    assert float(T.bone_edge_band(torch.zeros(2, 3, 8, 8)).sum()) == 0.0  # no bone, no band
    cfg = _cfg(steps=1)
    tr = T.Trainer(cfg)
    batch = T.stage1_batch(tr.pool, 0, cfg, "cpu")
    base, terms = T.stage1_losses(tr.model.eval(), batch)
    assert 0 < terms["recon_edge"] < terms["recon_rel"] and T.STAGE1_LOSS_WEIGHTS["recon_edge"] == 0.0
    more, _ = T.stage1_losses(tr.model.eval(), batch, {"recon_edge": 2.0})
    assert abs(float(more - base) - 2.0 * terms["recon_edge"]) < 1e-4 * max(1.0, float(more))


def test_scatter_range_scales_only_the_scatter_draws():
    """--scatter LO HI: the same uniform draws, rescaled; the other detector parameters and the
    layers are unchanged; bad ranges are named."""
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    d0 = T.random_detector(5, g1)
    d1 = T.random_detector(5, g2, {"scatter": (0.0, 0.15)})
    torch.testing.assert_close(torch.as_tensor(d1.scatter), 1.5 * torch.as_tensor(d0.scatter), rtol=1e-6, atol=1e-7)
    for k in ("n0", "blur_sigma_px", "electronic_sigma"):
        assert torch.equal(torch.as_tensor(getattr(d0, k)), torch.as_tensor(getattr(d1, k)))
    cfg0 = _cfg()
    pool = T.PhantomPool(cfg0.seed, cfg0.pool, cfg0.phantom_size, cfg0.refresh)
    a = T.stage1_batch(pool, 2, cfg0, "cpu")
    b = T.stage1_batch(pool, 2, _cfg(scatter=(0.0, 0.15)), "cpu")
    assert torch.equal(a["layers"], b["layers"]) and not torch.equal(a["image"], b["image"])
    for bad in ((0.2, 0.1), (-0.1, 0.1), (0.0, 1.0), (0.1,)):
        with pytest.raises(ValueError, match="scatter"):
            _cfg(scatter=bad).validate()


def test_n0_range_remaps_only_the_dose_draws():
    """--n0 LO HI: the dose is drawn log-uniform in [LO, HI] from the same uniform draws (so
    log n0 maps affinely), every other detector parameter and the layers are unchanged; bad
    ranges are named."""
    import math

    d0 = T.random_detector(64, torch.Generator().manual_seed(4))
    d1 = T.random_detector(64, torch.Generator().manual_seed(4), _cfg(n0=(1.0e3, 2.0e5)).detector_ranges())
    n_a, n_b = torch.as_tensor(d0.n0, dtype=torch.float64), torch.as_tensor(d1.n0, dtype=torch.float64)
    lo0, hi0 = T.DETECTOR_RANGES["n0"]
    u = (n_a.log() - math.log(lo0)) / (math.log(hi0) - math.log(lo0))  # the shared uniform draws
    torch.testing.assert_close(n_b.log(), math.log(1e3) + u * (math.log(2e5) - math.log(1e3)), rtol=1e-5, atol=1e-5)
    assert float(n_b.min()) >= 1e3 * (1 - 1e-5) and float(n_b.max()) <= 2e5 * (1 + 1e-5)
    assert float(n_b.min()) < lo0 and float(n_b.max()) > hi0  # 64 draws reach past the default range
    for k in ("scatter", "blur_sigma_px", "electronic_sigma"):
        assert torch.equal(torch.as_tensor(getattr(d0, k)), torch.as_tensor(getattr(d1, k)))
    assert _cfg(n0=(1e3, 2e5), scatter=(0.0, 0.15)).detector_ranges() == {"n0": (1e3, 2e5), "scatter": (0.0, 0.15)}
    cfg0 = _cfg()
    pool = T.PhantomPool(cfg0.seed, cfg0.pool, cfg0.phantom_size, cfg0.refresh)
    a = T.stage1_batch(pool, 2, cfg0, "cpu")
    b = T.stage1_batch(pool, 2, _cfg(n0=(500.0, 600.0)), "cpu")
    assert torch.equal(a["layers"], b["layers"]) and not torch.equal(a["image"], b["image"])
    for bad in ((2e3, 1e3), (0.0, 1e3), (1e3, float("inf")), (1e3,)):
        with pytest.raises(ValueError, match="n0"):
            _cfg(n0=bad).validate()


def test_stage2_transfer_rejects_bad_options_before_writing(tmp_path):
    from lsn_fast.experiments.stage2_transfer import run_stage2_transfer

    out = tmp_path / "nope"
    with pytest.raises(ValueError, match="loss_weights.*'layer'"):
        run_stage2_transfer(steps=1, n_train=1, n_test=1, size=64, out=str(out), loss_weights={"layer": 1.0})
    with pytest.raises(ValueError, match="setting"):
        run_stage2_transfer(steps=1, n_train=1, n_test=1, size=64, out=str(out), setting="mars")
    assert not out.exists()


@pytest.mark.skipif(not os.path.isfile(DEFAULT_WEIGHTS), reason="shipped weights missing")
def test_one_image_becomes_a_jsw_family_with_the_shipped_lsn():
    """Issue 4's 'done when': separate() one radiograph with the shipped weights, synthesize() a
    family at new JSWs; the JSW measured on the moved layers is the one asked for, and the LSN
    separating each synthesized *image* again measures it within 0.1 mm."""
    import lsn_fast as lf

    torch.set_num_threads(2)
    m = LSN.pretrained()
    st, info = lf.phantom.generate(1, size=256, seed=4321)
    det = lf.Detector(n0=2e4, blur_sigma_px=0.6, electronic_sigma=2.0)
    img = lf.compose(st, detector=det, seed=3)
    sep = separate(img, m)
    j0 = float(lf.measure_jsw(sep)[0])
    assert abs(j0 - float(info["jsw_mm"][0])) < 0.1
    asked = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0])
    imgs, labels = lf.synthesize(sep, torch.zeros(5, dtype=torch.int64), jsw_mm=asked, detector=det, seed=11)
    torch.testing.assert_close(labels, asked, atol=1e-4, rtol=0)
    moved = lf.measure_jsw(sep[torch.zeros(5, dtype=torch.int64)].shifted((asked - j0) / sep.spacing_mm))
    torch.testing.assert_close(moved, asked, atol=0.01, rtol=0)
    again = lf.measure_jsw(separate(imgs, m))
    assert float((again - asked).abs().max()) < 0.1, (again, asked)


@pytest.mark.parametrize("ranges", ["wide", "ra"])
def test_evaluate_heldout_sets(tiny, ranges):
    """eval-lsn's held-out sets: the true JSW it scores against is the phantom's (checked against
    measure_jsw on the true layers), the scores are those of score() on separate(), and unknown
    set names are rejected."""
    from lsn_fast.model import evaluate as E
    from lsn_fast.physics.jsw import measure_jsw

    st, info, images = E._heldout(3, 64, 10_000, ranges)
    torch.testing.assert_close(measure_jsw(st), info["jsw_mm"].float(), atol=0.01, rtol=0)
    res = E.evaluate(tiny, n=3, size=64, batch=2, ranges=ranges)
    want = E.score(separate(images, tiny, st.spacing_mm), st, info["jsw_mm"], images)
    assert res["bone_psnr_db"] == pytest.approx(want["bone_psnr_db"], rel=1e-5)
    assert res["recomposition_rel"] == pytest.approx(want["recomposition_rel"], rel=1e-5)
    with pytest.raises(ValueError, match="ranges"):
        E.evaluate(tiny, n=1, size=64, ranges="moon")


@pytest.mark.parametrize("recon_target", ["input", "teacher"])
def test_stage2_rejects_tiny_images_for_every_recon_target(tmp_path, recon_target):
    """The >= 16 px check on stage-2 data holds whatever the reconstruction target, and a stage-2
    trainer builds no stage-1 phantom pool."""
    from safetensors.torch import save_file

    d = tmp_path / "tiny"
    d.mkdir()
    save_file({"images": torch.rand(2, 1, 8, 8), "masks": torch.zeros(2, 2, 8, 8)}, str(d / "demo.safetensors"))
    with pytest.raises(ValueError, match="16x16"):
        T.Trainer(_cfg(stage=2, data=str(d), recon_target=recon_target))
    ok = tmp_path / "ok"
    T.write_demo_stage2_data(str(ok), n=2, size=32, seed=3)
    tr = T.Trainer(_cfg(stage=2, data=str(ok), recon_target=recon_target))
    assert not hasattr(tr, "pool") and (tr.teacher is not None) == (recon_target == "teacher")


def test_score_recomposition_floors_against_an_independent_blur(tmp_path):
    """score(detector=...): the no-deblur floor is ‖−log(G*exp(−A)) − A‖/‖A‖ computed here with the
    reference blur; the true layers score 0 through the detector; the noise level is the input's."""
    from lsn_fast.model import evaluate as E
    from lsn_fast.physics.reference import gaussian_blur

    st, info, images = E._heldout(4, 64, 10_050, "wide")
    det = info["detector"]
    A = st.attenuation()
    nrm = lambda t: t.flatten(1).norm(dim=1)  # noqa: E731
    floor = nrm(-torch.log(gaussian_blur(torch.exp(-A), det.blur_sigma_px.float())) - A) / nrm(A)
    res = E.score(st, st, info["jsw_mm"], images, detector=det)
    assert res["recomposition_noblur_floor_rel"] == pytest.approx(float(floor.mean()), rel=1e-3)
    assert 0.0 < res["recomposition_noblur_floor_rel"] < 0.1
    assert res["recomposition_rel"] == 0.0 and res["recomposition_detector_rel"] < 1e-6
    noiseless = E.compose(st, detector=det.replace(noise="none", electronic_sigma=0.0))
    want = nrm(images[:, 0] - noiseless[:, 0]) / nrm(noiseless[:, 0])
    assert res["input_noise_rel"] == pytest.approx(float(want.mean()), rel=1e-4)
    bare = E.score(st, st, info["jsw_mm"], images)
    assert "recomposition_detector_rel" not in bare  # needs the detector
    torch.testing.assert_close(torch.tensor(res["detector_per_sample"]["n0"]), det.n0.float(), rtol=1e-5, atol=0.01)
    png = E.plot_recomposition(res, str(tmp_path / "recomposition.png"))
    assert os.path.getsize(png) > 10_000
    with pytest.raises(ValueError, match="detector_per_sample"):
        E.plot_recomposition(bare, str(tmp_path / "no.png"))


def test_refiner_starts_as_identity_then_trains_alone(tmp_path):
    """with_refiner adds a zero-output DenoiseRefiner (same outputs as the model it extends); the
    weights round-trip with the refiner in the config; train_only='refine' moves only the refiner,
    and the layers still add up to D."""
    from lsn_fast.model.lsn import with_refiner

    torch.manual_seed(0)
    base = LSN.tiny().eval()
    for p in base.parameters():  # the zero-initialized head would hide the layer fractions
        p.data.add_(0.05 * torch.randn_like(p))
    ref = with_refiner(base, 8, 3).eval()
    x = torch.rand(2, 1, 32, 48) * 2
    with torch.no_grad():
        a, b = base(x), ref(x)
    torch.testing.assert_close(b.layers, a.layers, atol=0, rtol=0)
    assert ref.config.refine_channels == 8 and base.config.refine_channels == 0 and base.refine is None
    assert with_refiner(ref, 8, 3) is ref
    for bad in ((4, 3), (16, 4)):  # narrower, or another depth
        with pytest.raises(ValueError, match="refine_channels"):
            with_refiner(ref, *bad)
    with pytest.raises(ValueError, match="refine_channels"):
        LSNConfig(refine_channels=-1)
    save_weights(base, tmp_path / "base.safetensors")
    tr = T.Trainer(_cfg(init=str(tmp_path / "base.safetensors"), refine_channels=8, refine_layers=3, train_only="refine", steps=3))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    for _ in range(3):
        tr.step()
    after = tr.model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("refine.") for k in changed), changed
    with torch.no_grad():
        o = tr.model.eval()(x)
    torch.testing.assert_close(o.layers.sum(1, keepdim=True), o.denoised, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(o.denoised, a.denoised)  # the trained refiner changes D
    save_weights(tr.model, tmp_path / "ref.safetensors")
    back = load_weights(tmp_path / "ref.safetensors")
    assert back.config.refine_channels == 8
    with torch.no_grad():
        torch.testing.assert_close(back(x).layers, o.layers)
    with torch.no_grad():  # a bf16 model (no autocast) runs, refiner included
        bf = load_weights(tmp_path / "ref.safetensors").to(torch.bfloat16)(x.to(torch.bfloat16))
    torch.testing.assert_close(bf.layers.float(), o.layers, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="train_only"):
        T.Trainer(_cfg(train_only="refine"))  # no refiner
    with pytest.raises(ValueError, match="train_only"):
        _cfg(train_only="head").validate()


def test_widened_refiner_keeps_the_function_and_trains_its_new_channels(tmp_path):
    """with_refiner widens a trained refiner (Net2Net-style): same outputs before training, the
    new channels' weights move on the first steps, and the run from a saved narrow model works."""
    from lsn_fast.model.lsn import with_refiner

    torch.manual_seed(1)
    base = with_refiner(LSN.tiny(), 8, 3).eval()
    for p in base.parameters():  # a "trained" model: the refiner's last conv no longer zero
        p.data.add_(0.05 * torch.randn_like(p))
    wide = with_refiner(base, 12, 3, seed=3).eval()
    assert wide.config.refine_channels == 12 and wide.refine.net[0].weight.shape[0] == 12
    x = torch.rand(2, 1, 32, 48) * 2
    with torch.no_grad():
        a, b = base(x), wide(x)
    assert float(base.refine.net[-1].weight.abs().sum()) > 0  # the narrow refiner is active
    torch.testing.assert_close(b.denoised, a.denoised, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.layers, a.layers, atol=1e-6, rtol=1e-6)
    assert float(wide.refine.net[0].weight[8:].abs().sum()) > 0  # new channels are not dead
    assert float(wide.refine.net[2].weight[:8, 8:].abs().sum()) == 0  # ... and silent at first
    save_weights(base, tmp_path / "narrow.safetensors")
    tr = T.Trainer(_cfg(init=str(tmp_path / "narrow.safetensors"), refine_channels=12, refine_layers=3,
                        train_only="refine", steps=2))
    w0 = tr.model.refine.net[4].weight.detach().clone()
    tr.step()
    w1 = tr.model.refine.net[4].weight.detach()
    assert not torch.equal(w0[:, 8:], w1[:, 8:])  # the last conv starts listening to the new channels


# ------------------------------------------------------------------ weights hardening (issue #32) and quality (#33)
def _tiny_file(tmp_path, name="w.safetensors", config=None, cast=None):
    from safetensors.torch import save_file

    m = LSN.tiny()
    state = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    if cast is not None:
        k0 = "stem.weight"
        state[k0] = state[k0].to(cast)
    cfg = m.config.to_json() if config is None else (config if isinstance(config, str) else json.dumps(config))
    p = tmp_path / name
    save_file(state, str(p), metadata={"format": "lsn_fast.LSN", "version": "1", "lsn_config": cfg})
    return p


@pytest.mark.parametrize("cast", [torch.int64, torch.bool, torch.float64])
def test_weights_with_inexact_dtype_are_refused(tmp_path, cast):
    with pytest.raises(ValueError, match="not float32"):
        load_weights(_tiny_file(tmp_path, cast=cast))
    assert isinstance(load_weights(_tiny_file(tmp_path, "ok.safetensors")), LSN)


def test_weights_config_checked_before_building(tmp_path):
    good = json.loads(LSNConfig.tiny().to_json())
    with pytest.raises(ValueError, match="JSON object"):
        load_weights(_tiny_file(tmp_path, config=json.dumps([1, 2, 3])))
    with pytest.raises(ValueError, match="unknown field"):
        load_weights(_tiny_file(tmp_path, config={**good, "extra_layers": 3}))
    with pytest.raises(ValueError, match="must be an int"):
        load_weights(_tiny_file(tmp_path, config={**good, "base_channels": 4.0}))
    with pytest.raises(ValueError, match="must be an int"):
        load_weights(_tiny_file(tmp_path, config={**good, "attn_layers": True}))
    # a small file whose config asks for a model of many GB: refused before any allocation
    with pytest.raises(ValueError, match="base_channels"):
        load_weights(_tiny_file(tmp_path, config={**good, "base_channels": 3000}))
    with pytest.raises(ValueError, match="MAX_PARAMETERS"):
        load_weights(_tiny_file(tmp_path, config={**good, "base_channels": 256, "channel_mults": [1, 2, 4, 8, 16],
                                                  "heads": 4}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_pretrained_on_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA"):
        LSN.pretrained(map_location="cuda")


def test_separate_quality_flags_padding_and_noise():
    from lsn_fast.model.lsn import SeparationQuality
    from lsn_fast.physics.detector import Detector
    from lsn_fast.physics.phantom import generate
    from lsn_fast.synthesis.compose import compose

    stack, _ = generate(2, size=128, spacing_mm=0.1, seed=3)
    y = compose(stack, detector=Detector(), seed=0)
    g = torch.Generator().manual_seed(0)
    junk = torch.zeros(1, 1, 128, 128)
    junk[..., :, 64:] = 0.02 * torch.rand(1, 1, 128, 64, generator=g)  # padding and noise
    images = torch.cat([y, junk])
    plain = separate(images, model="small-fov")
    st, q = separate(images, model="small-fov", return_quality=True)
    assert isinstance(q, SeparationQuality)
    torch.testing.assert_close(st.soft, plain.soft)  # the old return is unchanged
    assert q.recomposition_error.shape == (3,) and q.bone_fraction.shape == (3,)
    assert not q.flagged[:2].any(), q.reasons[:2]
    assert bool(q.flagged[2]) and q.reasons[2]
    assert float(q.recomposition_error[0]) < 0.05 and 0.08 < float(q.bone_fraction[0]) < 0.45


def test_soft_contour_sees_bone_left_in_the_soft_layer():
    """``soft_contour`` (#33): the true soft layer of a phantom carries little of the image's edge
    energy at the bone margins; a soft layer holding a third of the bone (the leak seen on real
    crops) carries much more; no bone gives NaN, not a number; the quality row reports it."""
    from lsn_fast.model.lsn import soft_contour
    from lsn_fast.physics.phantom import generate

    st, _ = generate(3, size=96, spacing_mm=0.1, seed=5)
    x = st.attenuation()
    bone = st.upper + st.lower
    clean = soft_contour(x, st.soft, bone)
    leaky = soft_contour(x, st.soft + 0.33 * bone, bone)
    assert clean.shape == (3,) and bool((clean < 0.05).all()), clean
    assert bool((leaky > 0.08).all()) and bool((leaky > 3 * clean).all()), (clean, leaky)
    none = soft_contour(x, st.soft, torch.zeros_like(bone))
    assert bool(torch.isnan(none).all())
    images = x.unsqueeze(1)
    _, q = separate(images, model="small-fov", return_quality=True)
    assert q.soft_contour.shape == (3,) and "soft_contour" in q.row(0)


def test_stage2_mixes_stage1_phantom_steps_and_anchors_the_bones(tmp_path):
    """``mix_stage1=K``: every K-th stage-2 step is a stage-1 step on phantoms with known layers
    (its record has the stage-1 terms, the discriminator is not stepped on it); ``anchor_bone``
    is the L1 distance of the bone layers to the frozen initial model's (its teacher exists for
    it alone); both are refused where they make no sense."""
    torch.set_num_threads(1)
    d = tmp_path / "s2"
    T.write_demo_stage2_data(str(d), n=2, size=64, seed=3)
    tr = T.Trainer(_cfg(stage=2, steps=4, data=str(d), recon_target="input", mix_stage1=2,
                        loss_weights={"anchor_bone": 1.0}))
    assert tr.teacher is not None
    recs = [tr.step() for _ in range(4)]
    assert [r["phantom_step"] for r in recs] == [False, True, False, True]
    assert "layer" in recs[1] and "layer" not in recs[0] and "disc" not in recs[1] and "disc" in recs[0]
    assert recs[2]["anchor_bone"] > 0  # the model moved away from the teacher's bone layers
    batch, g = T.stage2_batch(tr.images, tr.masks, 0, tr.cfg, tr.device)
    _, terms, _ = T.stage2_losses(tr.model, None, batch, g, weights={"anchor_bone": 1.0}, teacher=tr.teacher,
                                  recon_target="input")
    with torch.no_grad():
        P = tr.model(batch["image"], validate=False).layers
        want = T.LOSS_SCALE * (P[:, 1:3] - tr.teacher(batch["image"], validate=False).layers[:, 1:3]).abs().mean()
    assert terms["anchor_bone"] == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match="mix_stage1"):
        _cfg(stage=1, mix_stage1=2).validate()
    with pytest.raises(ValueError, match="mix_stage1"):
        _cfg(stage=2, data=str(d), mix_stage1=-1).validate()


def test_soft_contour_gate_flags_a_soft_layer_with_bone_margins():
    """The gate (#33): a stack whose soft layer holds a share of the bone is flagged with the
    reason named; the same images with the true split are not flagged for it."""
    from lsn_fast.model.lsn import QUALITY_LIMITS, SeparationQuality
    from lsn_fast.physics.phantom import generate

    st, _ = generate(2, size=96, spacing_mm=0.1, seed=6)
    x = st.attenuation().unsqueeze(1)
    good = torch.stack([st.soft, st.upper, st.lower], 1)
    leak = torch.stack([st.soft + 0.33 * (st.upper + st.lower), 0.67 * st.upper, 0.67 * st.lower], 1)
    ones = torch.ones(2)
    qg = SeparationQuality.of(x, good, ones)
    ql = SeparationQuality.of(x, leak, ones)
    assert not any("soft layer" in r for rs in qg.reasons for r in rs), qg.reasons
    assert bool(ql.flagged.all()) and all(any("soft layer carries bone contours" in r for r in rs) for rs in ql.reasons)
    assert bool((ql.soft_contour > QUALITY_LIMITS["soft_contour"]).all())
