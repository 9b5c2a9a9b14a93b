"""JSWStream (issue 5): sample k is a pure function of (seed, k); sharding covers [0, N) exactly
once across DataLoader workers and ranks; resume equals uninterrupted; labels are the moved
layers' JSW; grade-balanced sampling; configuration errors; shard export round trip."""

import json
import os

import pytest
import torch

import lsn_fast as lf
from helpers import whole_pixel_copy
from lsn_fast.synthesis.export import export_shards, read_shard, verify_export
from lsn_fast.synthesis.stream import (GRADE_EDGES, Augment, JSWStream, _grade_edges, _grade_thresholds, bank_from_phantoms,
                             bank_memory_bytes, make_bank)
from lsn_fast.tasks.svdh import svdh_grade

SIZE = 48
SPACING = 0.2


@pytest.fixture(scope="module")
def bank():
    return bank_from_phantoms(8, size=SIZE, spacing_mm=SPACING, seed=3, dtype=torch.float32, progress=False)


RICH = dict(detector=lf.Detector(), bone="random", augment=True,
            detector_ranges={"n0": (2e3, 5e4, "log"), "blur_sigma_px": (0.3, 1.2), "electronic_sigma": (0.0, 4.0)})


def collect(batches):
    """{global index: (image, label, bank entry, bone)} from an iterable of batches; asserts no repeats."""
    out = {}
    for images, jsw, info in batches:
        assert images.shape[1:] == (1, SIZE, SIZE) and images.shape[0] == jsw.shape[0] == info["index"].shape[0]
        for i, k in enumerate(info["index"].tolist()):
            assert k not in out, f"sample {k} repeated"
            out[k] = (images[i], jsw[i], int(info["bank_index"][i]), int(info["bone"][i]))
    return out


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k][0], b[k][0]), f"image of sample {k} differs"
        assert torch.equal(a[k][1], b[k][1]) and a[k][2:] == b[k][2:]


# ------------------------------------------------------------------------------ determinism
def test_batch_size_invariance(bank):
    ref = collect(JSWStream(bank, 1, jsw_mm=(0.2, 2.5), num_samples=11, **RICH))
    assert sorted(ref) == list(range(11))
    for bs in (3, 8):
        assert_same(ref, collect(JSWStream(bank, bs, jsw_mm=(0.2, 2.5), num_samples=11, **RICH)))
    # generate() at arbitrary indices, in any order, gives the same samples
    img, jsw, info = JSWStream(bank, 4, jsw_mm=(0.2, 2.5), **RICH).generate([7, 2, 9])
    for i, k in enumerate((7, 2, 9)):
        assert torch.equal(img[i], ref[k][0]) and torch.equal(jsw[i], ref[k][1])
    # a different seed gives different samples
    other = collect(JSWStream(bank, 8, jsw_mm=(0.2, 2.5), num_samples=11, seed=1, **RICH))
    assert not torch.equal(other[0][0], ref[0][0])


def test_dataloader_workers_invariance(bank):
    mk = lambda: JSWStream(bank, 3, jsw_mm=(0.2, 2.5), num_samples=20, **RICH)  # noqa: E731
    ref = collect(mk())
    dl = torch.utils.data.DataLoader(mk(), batch_size=None, num_workers=2, persistent_workers=False)
    batches = list(dl)
    assert {b[2]["worker"] for b in batches} == {0, 1} and {b[2]["num_shards"] for b in batches} == {2}
    got = collect(batches)
    assert sorted(got) == list(range(20))
    assert_same(ref, got)


def test_explicit_ranks_and_workers_cover_exactly_once(bank):
    N = 23
    ref = collect(JSWStream(bank, 4, num_samples=N, detector=lf.Detector()))
    got = {}
    for rank in range(2):
        s = JSWStream(bank, 4, num_samples=N, detector=lf.Detector(), rank=rank, world_size=2)
        part = collect(s.loader(num_workers=2))
        lo, hi = s.shard_range(2 * rank, 4)[0], s.shard_range(2 * rank + 1, 4)[1]
        assert sorted(part) == list(range(lo, hi))  # a rank owns a contiguous block of [0, N)
        assert not set(part) & set(got)
        got.update(part)
    assert_same(ref, got)


@pytest.mark.parametrize("N,S,B,drop_last", [(23, 1, 4, False), (23, 4, 4, False), (23, 6, 5, False), (5, 8, 2, False),
                                              (100, 3, 7, False), (23, 4, 4, True)])
def test_shard_plans_cover_range(bank, N, S, B, drop_last):
    s = JSWStream(bank, B, num_samples=N, drop_last=drop_last)
    seen = []
    for shard in range(S):
        for k, cursor in s._plan(shard, S, 0):
            assert k.numel() == B or not drop_last
            assert k.numel() <= B
            seen += k.tolist()
    assert len(seen) == len(set(seen))
    if drop_last:
        assert set(seen) <= set(range(N)) and len(seen) == sum((s.shard_range(i, S)[1] - s.shard_range(i, S)[0]) // B * B for i in range(S))
    else:
        assert sorted(seen) == list(range(N))


def test_infinite_shards_interleave(bank):
    s = JSWStream(bank, 3)
    S, j = 4, 5
    seen = []
    for shard in range(S):
        it = s._plan(shard, S, 0)
        for _ in range(j):
            seen += next(it)[0].tolist()
    assert sorted(seen) == list(range(j * S * 3))


def _ddp_worker(rank, world, path, init_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        bank = bank_from_phantoms(4, size=SIZE, spacing_mm=SPACING, seed=3, dtype=torch.float32, progress=False)
        s = JSWStream(bank, 4, num_samples=18, detector=lf.Detector())
        out = {}
        for img, jsw, info in s:
            assert info["rank"] == rank and info["world_size"] == world
            for i, k in enumerate(info["index"].tolist()):
                out[k] = (img[i].sum().item(), jsw[i].item())
        with open(f"{path}.{rank}.json", "w") as f:
            json.dump(out, f)
    finally:
        dist.destroy_process_group()


def test_torch_distributed_gloo_spawn(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    base = str(tmp_path / "ranks")
    mp.spawn(_ddp_worker, args=(2, base, str(tmp_path / "init")), nprocs=2, join=True)
    parts = [json.load(open(f"{base}.{r}.json")) for r in range(2)]
    assert not set(parts[0]) & set(parts[1])
    merged = {int(k): v for p in parts for k, v in p.items()}
    assert sorted(merged) == list(range(18))
    bank = bank_from_phantoms(4, size=SIZE, spacing_mm=SPACING, seed=3, dtype=torch.float32, progress=False)
    img, jsw, _ = JSWStream(bank, 4, detector=lf.Detector()).generate(torch.arange(18))
    for k in range(18):
        assert merged[k][0] == pytest.approx(img[k].sum().item(), rel=1e-6) and merged[k][1] == pytest.approx(jsw[k].item())


# ------------------------------------------------------------------------------ resume
def test_resume_single_process_finite_and_infinite(bank):
    full = list(JSWStream(bank, 3, num_samples=14, **RICH))
    s = JSWStream(bank, 3, num_samples=14, **RICH)
    it = iter(s)
    head = [next(it), next(it)]
    state = json.loads(json.dumps(s.state_dict()))  # JSON-able
    assert state["consumed"] == {"0": 6}
    s2 = JSWStream(bank, 3, num_samples=14, **RICH)
    s2.load_state_dict(state)
    assert s2.state_dict()["consumed"] == {0: 6}  # a resumed stream reports where it stands before iterating
    tail = list(s2)
    assert len(head) + len(tail) == len(full)
    for a, b in zip(head + tail, full):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2]["index"], b[2]["index"])
    assert s2.state_dict()["consumed"] == {}  # epoch complete
    assert len(list(s2)) == len(full)  # a fresh iteration starts the epoch again

    inf = JSWStream(bank, 2, detector=lf.Detector())
    it = iter(inf)
    first = [next(it)[2]["index"] for _ in range(5)]
    inf = JSWStream(bank, 2, detector=lf.Detector())
    it = iter(inf)
    _ = [next(it) for _ in range(3)]
    st = inf.state_dict()
    inf2 = JSWStream(bank, 2, detector=lf.Detector())
    inf2.load_state_dict(st)
    it2 = iter(inf2)
    assert [next(it2)[2]["index"].tolist() for _ in range(2)] == [t.tolist() for t in first[3:]]


def test_resume_with_workers(bank):
    mk = lambda: JSWStream(bank, 2, num_samples=17, **RICH)  # noqa: E731
    ref = collect(mk())
    s = mk()
    got = {}
    for n, batch in enumerate(s.loader(num_workers=2)):
        got.update(collect([batch]))
        if n == 3:
            break
    state = s.state_dict()
    assert state["num_shards"] == 2 and sum(state["consumed"].values()) == len(got)
    s2 = mk()
    s2.load_state_dict(state)
    rest = collect(s2.loader(num_workers=2))
    assert not set(rest) & set(got)
    got.update(rest)
    assert_same(ref, got)
    bad = mk()
    bad.load_state_dict(state)
    with pytest.raises(ValueError, match="state_dict"):
        list(bad)  # 2 shards saved, 1 now


@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_with_workers_ends_the_epoch_exactly_at_the_last_batch(bank, drop_last):
    """With DataLoader workers the epoch is complete when every shard's cursor *reaches* its end
    (2 shards of 17 samples: [0, 8) and [8, 17); with drop_last and batch 4 the second ends after
    8 samples, not 9): after the last batch the state is empty, as for the single-process stream;
    one batch short of the end (either shard) it is not."""
    s = JSWStream(bank, 4, num_samples=17, drop_last=drop_last)
    ends = {0: 8, 1: 8 if drop_last else 9}
    assert [s.shard_range(sh, 2) for sh in range(2)] == [(0, 8), (8, 17)]
    first = [b[2] for b in s.loader(num_workers=2)]
    assert sorted(torch.cat([i["index"] for i in first]).tolist()) == list(range(8)) + list(range(8, 8 + ends[1]))
    assert s.state_dict()["consumed"] == {}  # epoch complete: a cursor exactly at the end counts as done
    # the boundary, recorded batch by batch: done only once both shards sit exactly at their ends
    for last in (0, 1):
        t = JSWStream(bank, 4, num_samples=17, drop_last=drop_last)
        for info in [i for i in first if i["shard"] != last] + [i for i in first if i["shard"] == last]:
            assert not t._epoch_done()
            t.record(info)
        assert t.state_dict()["consumed"] == ends and t._epoch_done()


def test_record_ignores_a_stale_cursor(bank):
    """``record`` keeps the furthest point a shard has reached: recording an earlier batch after a
    later one (or the same batch twice) does not move the resume point back, so the resumed run
    does not repeat samples."""
    full = list(JSWStream(bank, 3, num_samples=14))
    infos = [b[2] for b in full]
    s = JSWStream(bank, 3, num_samples=14)
    for i in (0, 2, 1, 2, 0):  # batch 2 ends at sample 9; batches 0 and 1 are stale after it
        s.record(infos[i])
    assert s.state_dict()["consumed"] == {0: 9}
    r = JSWStream(bank, 3, num_samples=14)
    r.load_state_dict(s.state_dict())
    assert [b[2]["index"].tolist() for b in r] == [i["index"].tolist() for i in infos[3:]]


def test_set_epoch_gives_fresh_indices(bank):
    s = JSWStream(bank, 4, num_samples=6)
    s.set_epoch(2)
    idx = torch.cat([b[2]["index"] for b in s])
    assert idx.tolist() == list(range(12, 18))


# ------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("bone", ["upper", "lower", "both"])
def test_labels_match_measured_jsw_of_moved_layers(bank, bone):
    s = JSWStream(bank, 8, jsw_mm=(0.4, 2.5), bone=bone, num_samples=8)
    _, jsw, info = next(iter(s))
    sub = bank[info["bank_index"]]
    moved = sub.shifted(info["shift_px"], bone=bone)
    measured = lf.measure_jsw(moved)
    assert torch.allclose(measured, jsw, atol=0.02), (measured - jsw).abs().max()
    assert torch.allclose(jsw, info["jsw0_mm"] + info["shift_px"] * SPACING, atol=1e-5)
    assert ((jsw >= 0.4 - 1e-6) & (jsw <= 2.5 + 1e-6)).all()
    # the noiseless image is the composite of the moved layers
    img, _, info2 = JSWStream(bank, 8, jsw_mm=(0.4, 2.5), bone=bone).generate(info["index"])
    assert torch.allclose(img[:, 0], moved.attenuation(), atol=1e-5)


def test_both_bones_samples_do_not_depend_on_the_batch(bank):
    """``bone="both"`` takes its own path (both moves in PyTorch, then the fused pass): a
    sample's pixels must still be a pure function of (seed, k), whatever batch it is drawn in,
    with per-sample detector draws; and its bone code is 2."""
    kw = dict(jsw_mm=(0.2, 2.5), bone="both", detector=lf.Detector(), seed=9,
              detector_ranges={"n0": (2e3, 2e4, "log"), "blur_sigma_px": (0.3, 1.2)})
    a = collect(JSWStream(bank, 5, num_samples=10, **kw))
    b = collect(JSWStream(bank, 3, num_samples=10, **kw))
    for k in a:
        assert torch.equal(a[k][0], b[k][0]) and a[k][3] == 2
    up = collect(JSWStream(bank, 5, num_samples=10, **dict(kw, bone="upper")))
    assert any(not torch.equal(a[k][0], up[k][0]) for k in a)


@pytest.mark.parametrize("bone", ["upper", "lower", "both"])
def test_integer_moves_are_exact_copies_labelled_by_the_jsw_reached(bank, bone):
    """``moves="integer"``: each moved bone is its layer copied at whole-pixel offsets (the
    noiseless image is soft + copies, no interpolation), the label is the JSW that move reaches
    (measured on the moved layers), within the rounding of the drawn target (same seed,
    ``moves="subpixel"``), and ``disp_px`` is reported."""
    kw = dict(jsw_mm=(0.4, 2.5), bone=bone, seed=5)
    img, jsw, info = JSWStream(bank, 8, moves="integer", **kw).generate(torch.arange(8))
    _, drawn, _ = JSWStream(bank, 8, **kw).generate(torch.arange(8))
    d = info["disp_px"]
    assert d.shape == (8, 2) and bool((d == torch.round(d)).all()) and bool(d.abs().sum() > 0)
    sub = bank[info["bank_index"]]
    ups, lows = [], []
    for k in range(8):
        up, low = {"upper": (d[k], torch.zeros(2)), "lower": (torch.zeros(2), d[k]),
                   "both": (torch.div(d[k], 2, rounding_mode="floor"), d[k] - torch.div(d[k], 2, rounding_mode="floor"))}[bone]
        ups.append(whole_pixel_copy(sub.upper[k], up))
        lows.append(whole_pixel_copy(sub.lower[k], -low))
    moved = lf.LayerStack(sub.soft, torch.stack(ups), torch.stack(lows), SPACING, sub.axis, validate=False)
    torch.testing.assert_close(img[:, 0], moved.attenuation(), atol=1e-5, rtol=0)
    torch.testing.assert_close(lf.measure_jsw(moved), jsw, atol=0.02, rtol=0)
    axis = bank.resolved_axis()[info["bank_index"]]
    torch.testing.assert_close(jsw, info["jsw0_mm"] + (d * axis).sum(1) * SPACING, atol=1e-5, rtol=0)
    torch.testing.assert_close(info["shift_px"], (d * axis).sum(1), atol=1e-5, rtol=0)
    slack = 0.5 * axis.abs().sum(1) * SPACING + 1e-5  # rounding per component
    assert bool(((jsw - drawn).abs() <= slack).all()) and not torch.equal(jsw, drawn)
    assert torch.equal(info["grade"], svdh_grade(jsw, info["jsw0_mm"], _grade_thresholds()))  # grades of the reached JSW


def test_integer_moves_do_not_depend_on_the_batch_and_close_no_joint(bank):
    """Whole-pixel samples stay a pure function of (seed, k) with random bones, detector draws and
    augmentation; targets at 0 mm never give a negative label (rounded one pixel wider)."""
    ref = collect(JSWStream(bank, 1, jsw_mm=(0.0, 2.5), num_samples=9, moves="integer", **RICH))
    assert_same(ref, collect(JSWStream(bank, 4, jsw_mm=(0.0, 2.5), num_samples=9, moves="integer", **RICH)))
    _, jsw, info = JSWStream(bank, 8, jsw_mm=0.0, bone="both", moves="integer").generate(torch.arange(8))
    assert bool((jsw >= 0).all()) and bool((jsw <= 0.71 * SPACING * 2 + 1e-5).all())
    cfg = JSWStream(bank, 2, moves="integer").config()
    assert cfg["moves"] == "integer" and json.loads(json.dumps(cfg))["moves"] == "integer"


def test_grade_balanced_is_uniform_and_consistent(bank):
    from lsn_fast.tasks.svdh import svdh_grade

    assert GRADE_EDGES == _grade_edges()
    s = JSWStream(bank, 8, grade_balanced=True)
    d = s.draws(torch.arange(2000))
    counts = torch.bincount(d["grade"], minlength=5)
    assert counts.numel() == 5 and (counts - 400).abs().max() < 80, counts
    assert torch.equal(d["grade"], svdh_grade(d["jsw_mm"], d["jsw0_mm"]))
    assert (d["jsw_mm"] >= 0).all() and (d["jsw_mm"] <= d["jsw0_mm"] + 1e-6).all()
    _, jsw, info = s.generate(torch.arange(5))
    assert torch.equal(info["grade"], svdh_grade(jsw, info["jsw0_mm"]))


def test_jsw_samplers_and_bank_index(bank):
    s = JSWStream(bank, 4, jsw_sampler=torch.distributions.Uniform(0.5, 0.7))
    d = s.draws(torch.arange(200))
    assert d["jsw_mm"].min() >= 0.5 and d["jsw_mm"].max() <= 0.7
    s = JSWStream(bank, 4, jsw_sampler=lambda u: 0.3 + u)
    d = s.draws(torch.arange(200))
    assert d["jsw_mm"].min() >= 0.3 and d["jsw_mm"].max() <= 1.3 and d["jsw_mm"].std() > 0.2
    d = JSWStream(bank, 4, jsw_mm=1.25).draws(torch.arange(10))
    assert torch.allclose(d["jsw_mm"], torch.full((10,), 1.25))
    d = JSWStream(bank, 4, bank_index=[5, 1, 2]).draws(torch.arange(7))
    assert d["bank_index"].tolist() == [5, 1, 2, 5, 1, 2, 5]
    d = JSWStream(bank, 4, bank_index=lambda u: (u * 2).long()).draws(torch.arange(100))
    assert set(d["bank_index"].tolist()) == {0, 1}
    d = JSWStream(bank, 4).draws(torch.arange(400))
    assert set(d["bank_index"].tolist()) == set(range(8))
    d = JSWStream(bank, 4, bone="random").draws(torch.arange(400))
    assert 150 < int(d["bone"].sum()) < 250
    with pytest.raises(ValueError, match="jsw_sampler"):
        JSWStream(bank, 4, jsw_sampler=lambda u: u - 2.0).draws(torch.arange(4))


def test_bank_sources_dtype_and_path(bank, tmp_path):
    p = str(tmp_path / "bank.safetensors")
    bank.save(p)
    a = JSWStream(bank, 4, detector=lf.Detector(), num_samples=6)
    b = JSWStream(p, 4, detector=lf.Detector(), num_samples=6)
    assert_same(collect(a), collect(b))
    h = JSWStream(bank.to(torch.bfloat16), 4, detector=lf.Detector(), num_samples=6, out_dtype=torch.bfloat16)
    imgs, jsw, _ = next(iter(h))
    assert imgs.dtype == torch.bfloat16 and jsw.dtype == torch.float32
    assert bank_memory_bytes(100_000, 256, torch.bfloat16) == 3 * 100_000 * 65536 * 2
    assert make_bank(p, dtype=torch.bfloat16).dtype == torch.bfloat16
    small = make_bank(None, n=3, size=SIZE, spacing_mm=SPACING, progress=False)
    assert small.shape == (3, SIZE, SIZE) and small.dtype == torch.bfloat16
    # entries do not depend on the bank size
    assert torch.equal(small.soft[:2], make_bank(None, n=2, size=SIZE, spacing_mm=SPACING, progress=False).soft)


def test_augment_and_detector_values_in_info(bank):
    s = JSWStream(bank, 6, augment=Augment(hflip=1.0, rotate_deg=0.0, intensity_scale=(1, 1), intensity_shift=(0, 0)),
                  detector_ranges={"n0": (1e3, 1e4)})
    img, _, info = s.generate(torch.arange(6))
    plain, _, _ = JSWStream(bank, 6, detector_ranges={"n0": (1e3, 1e4)}).generate(torch.arange(6))
    assert torch.equal(img, plain.flip(-1))
    n0 = info["detector"]["n0"]
    assert n0.shape == (6,) and (n0 >= 1e3).all() and (n0 <= 1e4).all() and n0.unique().numel() == 6
    assert info["augment"]["hflip"].all()


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kw,arg", [
    (dict(jsw_mm=(-0.1, 1.0)), "jsw_mm"), (dict(jsw_mm=(2.0, 1.0)), "jsw_mm"), (dict(batch_size=0), "batch_size"),
    (dict(num_samples=0), "num_samples"), (dict(bone="middle"), "bone"), (dict(detector_ranges={"gain": (1, 2)}), "detector_ranges"),
    (dict(detector_ranges={"n0": (0.0, 10.0)}), "detector_ranges"), (dict(bank_index=[]), "bank_index"),
    (dict(bank_index=[0, 99]), "bank_index"), (dict(rank=2, world_size=2), "rank"), (dict(rank=0), "rank"),
    (dict(grade_balanced=True, jsw_sampler=lambda u: u), "jsw_sampler"), (dict(prefetch=-1), "prefetch"),
    (dict(moves="nearest"), "moves"),
])
def test_bad_configuration(bank, kw, arg):
    kw = {"batch_size": 4, **kw}
    with pytest.raises(ValueError, match=arg):
        JSWStream(bank, **kw)


def test_bad_bank_and_types(bank, tmp_path):
    with pytest.raises(TypeError, match="bank"):
        JSWStream(torch.zeros(2, 8, 8), 4)
    with pytest.raises(FileNotFoundError):
        JSWStream(str(tmp_path / "missing.safetensors"), 4)
    empty = lf.LayerStack(torch.rand(2, 40, 40), torch.zeros(2, 40, 40), torch.zeros(2, 40, 40), 0.2)
    with pytest.raises(ValueError, match="bank"):
        JSWStream(empty, 4)
    with pytest.raises(TypeError, match="batch_size"):
        JSWStream(bank, 2.5)
    with pytest.raises(ValueError, match="backend"):
        JSWStream(bank, 4, backend="nope")


# ------------------------------------------------------------------------------ export
@pytest.mark.parametrize("fmt", ["safetensors", "webdataset"])
def test_export_round_trip_and_resume(bank, tmp_path, fmt):
    args = dict(bank=bank, batch_size=4, detector=lf.Detector(), bone="random")
    out = str(tmp_path / "ex")
    man = export_shards(args, 10, out, shard_size=4, format=fmt, progress=False)
    assert man["complete"] and man["num_shards"] == 3 and man["counts"]["samples"] == 10 and man["seed"] == 0
    assert [s["count"] for s in man["shards"]] == [4, 4, 2] and all(len(s["sha256"]) == 64 for s in man["shards"])
    verify_export(out)
    ref_img, ref_jsw, ref_info = JSWStream(**args).generate(torch.arange(10))
    data = [read_shard(os.path.join(out, s["file"])) for s in man["shards"]]
    imgs = torch.cat([d["images"] for d in data])
    assert torch.equal(imgs, ref_img) and torch.equal(torch.cat([d["jsw_mm"] for d in data]), ref_jsw)
    assert torch.equal(torch.cat([d["index"] for d in data]), torch.arange(10))
    assert torch.equal(torch.cat([d["bone"] for d in data]), ref_info["bone"])
    # resume: complete shards are skipped; a damaged one is rewritten identically
    sha = man["shards"][1]["sha256"]
    with open(os.path.join(out, man["shards"][1]["file"]), "ab") as f:
        f.write(b"junk")
    man2 = export_shards(JSWStream(bank, 3, detector=lf.Detector(), bone="random"), 10, out, shard_size=4, format=fmt, progress=False)
    assert man2["skipped"] == 2 and man2["shards"][1]["sha256"] == sha
    verify_export(out)
    with pytest.raises(ValueError, match="out_dir"):
        export_shards(dict(args, seed=5), 10, out, shard_size=4, format=fmt, progress=False)


def test_export_cli(tmp_path):
    from lsn_fast.synthesis.export import run_synth
    import argparse

    from lsn_fast.synthesis.export import add_synth_arguments

    p = argparse.ArgumentParser()
    p.add_argument("--out")
    add_synth_arguments(p)
    out = str(tmp_path / "cli")
    args = p.parse_args(["--phantoms", "4", "--size", str(SIZE), "--spacing", str(SPACING), "--n", "6", "--shard-size", "4",
                         "--out", out, "--no-progress", "--grade-balanced", "--batch-size", "3"])
    assert run_synth(args) == 0
    man = verify_export(out)
    assert man["counts"]["samples"] == 6 and man["config"]["grade_balanced"]
    with pytest.raises(ValueError, match="--bank"):
        run_synth(p.parse_args(["--n", "6", "--out", out]))
    # whole-pixel, centred moves through the real command line: the displacement is exported per
    # axis, in whole numbers
    from lsn_fast.cli.main import main

    out2 = str(tmp_path / "cli_int")
    assert main(["synth", "--phantoms", "4", "--size", str(SIZE), "--spacing", str(SPACING), "--n", "5", "--out", out2,
                 "--no-progress", "--moves", "integer", "--bone", "both", "--format", "webdataset"]) == 0
    man = verify_export(out2)
    assert man["config"]["moves"] == "integer" and man["config"]["bone"] == "both"
    data = read_shard(os.path.join(out2, man["shards"][0]["file"]))
    for k in ("disp_dy_px", "disp_dx_px"):
        assert data[k].shape == (5,) and torch.equal(data[k], torch.round(data[k]))


# ------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_stream_matches_and_overlaps(bank):  # pragma: no cover - GPU session
    kw = dict(jsw_mm=(0.2, 2.5), num_samples=24, bone="random")
    cpu = collect(JSWStream(bank, 8, **kw))
    for src in (bank, bank.to("cuda")):  # pinned hand-off from a CPU bank, and a device bank
        got = {k: (v[0].cpu(), v[1].cpu(), *v[2:]) for k, v in collect(JSWStream(src, 8, device="cuda", prefetch=2, **kw)).items()}
        assert sorted(got) == sorted(cpu)
        for k in cpu:
            assert torch.allclose(got[k][0], cpu[k][0], atol=1e-5) and torch.allclose(got[k][1], cpu[k][1])
    noisy = dict(kw, detector=lf.Detector(), **{k: v for k, v in RICH.items() if k != "bone" and k != "detector"})
    a = collect(JSWStream(bank.to("cuda"), 1, device="cuda", **noisy))
    b = collect(JSWStream(bank.to("cuda"), 8, device="cuda", prefetch=3, **noisy))
    assert_same(a, b)
    for bone in ("random", "both"):  # whole-pixel moves: the same copies on the GPU, from a CPU or a device bank
        whole = dict(kw, bone=bone, moves="integer")
        cpu = collect(JSWStream(bank, 8, **whole))
        for src in (bank, bank.to("cuda")):
            got = collect(JSWStream(src, 8, device="cuda", **whole))
            for k in cpu:
                assert torch.allclose(got[k][0].cpu(), cpu[k][0], atol=1e-5) and torch.equal(got[k][1].cpu(), cpu[k][1])


def test_log_range_detector_draws_are_log_uniform(bank):
    s = JSWStream(bank, 4, detector=lf.Detector(), detector_ranges={"n0": (1e3, 1e5, "log"),
                                                                   "blur_sigma_px": (0.2, 1.4)})
    d = s.draws(torch.arange(4000))["params"]
    n0, blur = d[:, 0].double(), d[:, 3].double()
    assert float(n0.min()) >= 1e3 * (1 - 1e-6) and float(n0.max()) <= 1e5 * (1 + 1e-6)
    # log-uniform: log10 n0 uniform on [3, 5] (mean 4, a quarter below 3.5); linear: uniform on [0.2, 1.4]
    assert abs(float(n0.log10().mean()) - 4.0) < 0.03
    assert abs(float((n0 < 10**3.5).double().mean()) - 0.25) < 0.03
    assert abs(float(blur.mean()) - 0.8) < 0.02 and float(blur.min()) >= 0.2 and float(blur.max()) <= 1.4


def test_export_whole_pixel_displacements_keep_their_axes():
    from lsn_fast.synthesis.export import _flat_info

    info = {k: torch.zeros(2) for k in ("index", "bank_index", "bone", "jsw0_mm", "shift_px", "grade")}
    info["disp_px"] = torch.tensor([[-3.0, 1.0], [2.0, -5.0]])  # (dy, dx) per sample
    out = _flat_info(torch.zeros(2, 1, 4, 4), torch.zeros(2), info)
    assert out["disp_dy_px"].tolist() == [-3.0, 2.0] and out["disp_dx_px"].tolist() == [1.0, -5.0]


def test_augment_is_flip_then_rotate_then_scale_and_shift_with_the_drawn_values(bank):
    aug = Augment(hflip=0.5, rotate_deg=10.0, intensity_scale=(0.8, 1.2), intensity_shift=(-0.1, 0.1))
    idx = torch.arange(24)
    plain, _, _ = JSWStream(bank, 4, detector=lf.Detector(), seed=5).generate(idx)
    got, _, info = JSWStream(bank, 4, detector=lf.Detector(), seed=5, augment=aug).generate(idx)
    a = info["augment"]
    rot = a["rotate_deg"]
    assert float(rot.min()) < 0 < float(rot.max()) and float(rot.abs().max()) <= 10.0  # symmetric range
    from lsn_fast.physics.reference import rotate_about_centre

    x = torch.where(a["hflip"].view(-1, 1, 1, 1), plain.flip(-1), plain)
    want = rotate_about_centre(x, rot) * a["intensity_scale"].view(-1, 1, 1, 1) + a["intensity_shift"].view(-1, 1, 1, 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_stream_refuses_skips_or_allows_flagged_entries(tmp_path):
    """Quality flags (#33): from a SeparationQuality-like object, a bool tensor or the bank's file;
    refused by default with the entries and the reason named, skipped (never drawn) or allowed
    with a warning; save/read_flags round-trip in both file formats."""
    from types import SimpleNamespace

    st, _ = lf.phantom.generate(4, size=48, spacing_mm=0.2, seed=2)
    q = SimpleNamespace(flagged=torch.tensor([False, True, False, True]),
                        reasons=[[], ["recomposition error 12.0 % > 8 %"], [], ["bone fraction 2 %"]])
    with pytest.raises(ValueError, match=r"entries \[1, 3\].*recomposition error 12.0"):
        JSWStream(st, 4, quality=q)
    skip = JSWStream(st, 8, quality=q, on_flagged="skip", num_samples=64)
    seen = torch.cat([info["bank_index"] for _, _, info in skip])
    assert set(seen.tolist()) == {0, 2}
    with pytest.raises(ValueError, match="bank_index"):
        JSWStream(st, 4, quality=q.flagged, on_flagged="skip", bank_index=[0, 1])
    with pytest.warns(UserWarning, match="2 flagged bank entries"):
        JSWStream(st, 4, quality=q, on_flagged="allow")
    with pytest.raises(ValueError, match="on_flagged"):
        JSWStream(st, 4, on_flagged="ignore")
    with pytest.raises(ValueError, match="quality"):
        JSWStream(st, 4, quality=torch.tensor([True, False]))
    for ext in ("safetensors", "npz"):
        path = tmp_path / f"bank.{ext}"
        st.save(path, flagged=q.flagged, reasons=q.reasons)
        fl, why = lf.LayerStack.read_flags(path)
        assert fl.tolist() == q.flagged.tolist() and why == q.reasons
        torch.testing.assert_close(lf.LayerStack.load(path).upper, st.upper)
        with pytest.raises(ValueError, match="quality"):
            JSWStream(str(path), 4)
        assert set(torch.cat([i["bank_index"] for _, _, i in JSWStream(str(path), 8, on_flagged="skip",
                                                                        num_samples=32)]).tolist()) <= {0, 2}
    st.save(tmp_path / "plain.safetensors")
    assert lf.LayerStack.read_flags(tmp_path / "plain.safetensors") == (None, [])
    JSWStream(str(tmp_path / "plain.safetensors"), 4)  # no flags stored: nothing refused
