"""The command line as a new user meets it (issue 35; exit codes of issue 32): help, errors, exit
codes, where and how files are written, what the export refuses, what the sheets show."""

import argparse
import json
import os
import stat
import subprocess
import sys

import pytest
import torch

import lsn_fast as lf
from lsn_fast import viz
from lsn_fast.cli.main import build_parser, main
from lsn_fast.utils.files import atomic_write

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    assert main(["phantom", "--n", "2", "--size", "64", "--spacing", "0.2", "--out", str(p), "--no-progress"]) == 0
    return p


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _subparsers(p):
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield name, sp
                yield from _subparsers(sp)


def _leaves():
    return [(n, sp) for n, sp in _subparsers(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in sp._actions)]


# ------------------------------------------------------------------------- help and usage
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"lsn-fast {lf.__version__}"


def test_every_option_has_help_and_shows_its_default():
    for name, sp in _leaves():
        text = sp.format_help()
        for a in sp._actions:
            if not a.option_strings or isinstance(a, argparse._HelpAction):
                continue
            assert a.help, f"{name} {a.option_strings[0]} has no help"
            if a.default not in (None, False, argparse.SUPPRESS):
                h = sp._get_formatter()._get_help_string(a)
                assert "default" in h.lower(), f"{name} {a.option_strings[0]}: default {a.default!r} not shown"
        assert "--no-progress" in text, f"{name} lacks --no-progress"


def test_argparse_errors_are_one_line_naming_the_flag():
    r = subprocess.run([sys.executable, "-m", "lsn_fast.cli", "demo", "--n", "0"], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--n" in lines[0] and "usage:" not in r.stderr, r.stderr


def test_phantom_takes_no_progress(tmp_path, capsys):
    assert main(["phantom", "--n", "1", "--size", "64", "--spacing", "0.2", "--out", str(tmp_path / "b.safetensors"),
                 "--no-progress"]) == 0
    assert "phantoms:" not in capsys.readouterr().err


# ------------------------------------------------------------------------- exit codes
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_device_cuda_without_cuda_is_bad_usage(tmp_path, capsys, debug, bank_file):
    rc = main([*debug, "synth", "--bank", str(bank_file), "--n", "2", "--device", "cuda", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "--device cuda" in capsys.readouterr().err


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_unreadable_bank_exits_2_with_and_without_debug(tmp_path, capsys, debug):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a bank")
    assert main([*debug, "synth", "--bank", str(bad), "--n", "2", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--bank" in err.splitlines()[-1]
    assert ("Traceback" in err) == bool(debug)


# ------------------------------------------------------------------------- files
def test_files_get_the_users_umask(tmp_path, umask022, bank_file):
    out = tmp_path / "b.safetensors"
    assert main(["phantom", "--n", "1", "--size", "64", "--spacing", "0.2", "--out", str(out), "--png",
                 str(tmp_path / "b.png"), "--no-progress"]) == 0
    assert main(["synth", "--layers", str(bank_file), "--index", "0", "--jsw", "0.5,1", "--png", "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    assert main(["synth", "--bank", str(bank_file), "--n", "2", "--out", str(tmp_path / "e"), "--no-progress"]) == 0
    files = [out, tmp_path / "b.png", *(tmp_path / "s").iterdir(), *(tmp_path / "e").iterdir()]
    assert len(files) >= 7
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(p, fail)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def _git_ignored(path):
    return subprocess.run(["git", "-C", REPO, "check-ignore", "-q", path]).returncode == 0


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, ".git")), reason="not a git checkout")
def test_default_output_folders_are_git_ignored():
    from lsn_fast import bench

    defaults = {bench.default_out("cpu")}
    for name, sp in _leaves():
        for a in sp._actions:
            if "--out" in a.option_strings and a.default:
                defaults.add(a.default)
    assert "lsn_fast_demo" in defaults
    for d in defaults:
        assert _git_ignored(os.path.join(d, "x.png")), f"default output {d} is not git-ignored"
    assert not bench.default_out("cpu").startswith("benchmarks")


# ------------------------------------------------------------------------- export
def _export(tmp_path, *extra):
    return main(["synth", "--phantoms", "2", "--size", "64", "--spacing", "0.2", "--shard-size", "4",
                 "--out", str(tmp_path / "exp"), "--no-progress", *extra])


def test_export_never_shrinks_or_replaces_without_overwrite(tmp_path, capsys, monkeypatch):
    assert _export(tmp_path, "--n", "8") == 0
    man = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    capsys.readouterr()
    # refused before any bank is built
    import lsn_fast.synthesis.stream as stream_mod

    def no_bank(*a, **k):
        raise AssertionError("built a bank")

    monkeypatch.setattr(stream_mod, "bank_from_phantoms", no_bank)
    assert _export(tmp_path, "--n", "4") == 2
    err = capsys.readouterr().err
    assert "--n 4" in err and "--overwrite" in err and "overwrite=True" not in err and "out_dir" not in err
    assert _export(tmp_path, "--n", "8", "--seed", "3") == 2
    assert "--seed" in capsys.readouterr().err
    assert json.loads((tmp_path / "exp" / "manifest.json").read_text()) == man
    # a finished export of the same options: nothing to build, nothing to write
    assert _export(tmp_path, "--n", "8") == 0
    assert "nothing to do" in capsys.readouterr().out
    monkeypatch.undo()
    assert _export(tmp_path, "--n", "4", "--overwrite") == 0
    assert sorted(os.listdir(tmp_path / "exp")) == ["manifest.json", "shard-000000.safetensors"]


def test_export_checks_out_before_building(tmp_path, capsys, monkeypatch):
    import lsn_fast.synthesis.stream as stream_mod

    monkeypatch.setattr(stream_mod, "bank_from_phantoms", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    (tmp_path / "file").write_text("x")
    assert main(["synth", "--phantoms", "2", "--n", "2", "--out", str(tmp_path / "file"), "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


def test_export_api_refuses_to_shrink(tmp_path):
    from lsn_fast.synthesis.export import export_shards

    bank = lf.LayerStack.load(str(_bank(tmp_path)))
    stream = lf.JSWStream(bank, 4, seed=0)
    export_shards(stream, 4, str(tmp_path / "x"), shard_size=4, progress=False)
    with pytest.raises(ValueError, match="overwrite"):
        export_shards(stream, 2, str(tmp_path / "x"), shard_size=4, progress=False)


def _bank(tmp_path):
    p = tmp_path / "b.safetensors"
    main(["phantom", "--n", "2", "--size", "64", "--spacing", "0.2", "--out", str(p), "--no-progress"])
    return p


# ------------------------------------------------------------------------- numbers
def test_synth_refuses_a_jsw_that_leaves_the_frame(tmp_path, capsys, bank_file):
    assert main(["synth", "--layers", str(bank_file), "--index", "0", "--jsw", "1,8", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--jsw 8" in err and "frame" in err
    assert not (tmp_path / "s").exists()


def test_integer_moves_caption_shows_asked_and_reached(tmp_path, monkeypatch, bank_file):
    seen = {}
    real = viz.grid_figure

    def spy(images, labels, *a, **k):
        seen["labels"] = labels
        return real(images, labels, *a, **k)

    monkeypatch.setattr(viz, "grid_figure", spy)
    assert main(["synth", "--layers", str(bank_file), "--index", "0", "--jsw", "0.0,1.0", "--moves", "integer",
                 "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    data = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(tmp_path / "s" / "sweep.safetensors"))
    for asked, reached, lab in zip((0.0, 1.0), data["jsw_mm"].tolist(), seen["labels"]):
        assert lab.startswith(f"asked {asked:.2f} mm")
        if abs(reached - asked) >= 0.005:
            assert f"reached {reached:.2f}" in lab


# ------------------------------------------------------------------------- pictures
def test_sheet_of_13_reads_at_screen_width(tmp_path):
    from PIL import Image

    imgs = torch.rand(13, 1, 64, 64)
    p = viz.jsw_sweep(imgs, torch.linspace(0, 3, 13), torch.linspace(0, 3, 13), 0.2, tmp_path / "s.png")
    w, h = Image.open(p).size
    assert w <= 1600 and h > 2 * 300, (w, h)


def test_grid_captions_do_not_run_into_the_next_row():
    imgs = torch.rand(8, 1, 64, 64)
    fig = viz.grid_figure(imgs, ["true 1.000 mm\nmeasured 1.001 mm"] * 8, 0.2, ncols=4, title="t")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    axes = fig.axes
    for i, ax in enumerate(axes):
        lab = ax.xaxis.label.get_window_extent(r)
        for j, other in enumerate(axes):
            if j != i:
                assert not lab.overlaps(other.get_window_extent(r)), (i, j)
    viz.pyplot().close(fig)


def test_soft_tissue_panel_is_not_saturated():
    stack, _ = lf.phantom.generate(2, size=128, spacing_mm=0.2, seed=0)
    for b in range(2):
        soft = stack.soft[b]
        v = torch.from_numpy(viz.layer_window(soft))
        inside = soft > 0.02 * soft.max()
        assert float((v[inside] > 0.9).float().mean()) < 0.3
        assert 0.35 < float(v[inside].median()) < 0.65
