"""The lsn-fast command line: exit codes, one-line errors, the demo's outputs."""

import subprocess
import sys

import pytest
import torch

from lsn_fast.cli.main import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lsn_fast.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands_with_examples():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "demo" in r.stdout and "examples:" in r.stdout


def test_bad_usage_exits_2():
    assert run_cli("demo", "--n", "0").returncode == 2
    assert run_cli("no-such-command").returncode == 2
    assert main([]) == 2


def test_bad_value_is_one_line_error_without_traceback(tmp_path):
    r = run_cli("phantom", "--n", "2", "--size", "64", "--out", str(tmp_path / "x.txt"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--out" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_demo_writes_gallery(tmp_path):
    pytest.importorskip("lsn_fast.physics.phantom")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "2", "--size", "96", "--spacing", "0.2"]) == 0
    for name in ("phantoms.png", "layers.png", "jsw_sweep.png"):
        p = out / name
        assert p.exists() and p.stat().st_size > 5000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_phantom_command_writes_loadable_bank(tmp_path):
    pytest.importorskip("lsn_fast.physics.phantom")
    import lsn_fast as lf

    out = tmp_path / "bank.safetensors"
    assert main(["phantom", "--n", "3", "--size", "64", "--spacing", "0.2", "--out", str(out)]) == 0
    bank = lf.LayerStack.load(out)
    assert bank.shape == (3, 64, 64) and bank.spacing_mm == 0.2
    flat = tmp_path / "flat.safetensors"  # --texture 0: the same phantoms without trabecular texture
    assert main(["phantom", "--n", "3", "--size", "64", "--spacing", "0.2", "--texture", "0", "--out", str(flat)]) == 0
    smooth = lf.LayerStack.load(flat)
    assert torch.equal(smooth.soft, bank.soft) and not torch.equal(smooth.upper, bank.upper)
    assert main(["phantom", "--n", "1", "--size", "64", "--texture", "-1", "--out", str(flat)]) == 2


def test_warnings_are_one_line_like_errors(tmp_path):
    import numpy as np
    from PIL import Image

    png = tmp_path / "nospacing.png"
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(png)
    r = run_cli("separate", str(png), "--center", "32,32", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    # the reader's RadiographWarning (no spacing in the file), then the error naming --spacing
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("lsn-fast separate: warning: ") and "spacing" in lines[0]
    assert lines[1].startswith("lsn-fast separate: error: ") and "--spacing" in lines[1]
    # --debug keeps Python's own warning format (file and line of the warning)
    r = run_cli("--debug", "separate", str(png), "--center", "32,32", "--out", str(tmp_path / "o"))
    assert "RadiographWarning" in r.stderr


def test_separate_command_writes_layers(tmp_path):
    import lsn_fast as lf
    from lsn_fast import io

    st, _ = lf.phantom.generate(1, size=128, spacing_mm=0.2, seed=3)
    img = lf.compose(st, detector=lf.Detector(), seed=1)[0, 0]
    png = io.write_png(tmp_path / "joint.png", img, bits=16)
    out = tmp_path / "sep"
    assert main(["separate", str(png), "--center", "64,64", "--spacing", "0.2", "--size", "64", "--out", str(out), "--full"]) == 0
    layers = lf.LayerStack.load(out / "layers.safetensors")
    assert layers.shape == (1, 64, 64)
    full = lf.LayerStack.load(out / "layers_full.safetensors")
    assert full.shape == (1, 128, 128) and full.spacing_mm == 0.2
    assert (out / "layers.png").stat().st_size > 5000 and (out / "separation.json").exists()
    # a centre outside the image is bad usage, not a crash
    assert main(["separate", str(png), "--center", "500,64", "--spacing", "0.2", "--out", str(out)]) == 2


def test_every_subcommand_has_help():
    for cmd in (["demo"], ["phantom"], ["separate"], ["bench"], ["synth"], ["train-lsn"], ["eval-lsn"], ["experiment"], ["experiment", "five-percent"]):
        r = run_cli(*cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage:" in r.stdout


def test_synth_sweep_from_layers(tmp_path):
    import lsn_fast as lf
    from safetensors.torch import load_file

    bank_path = tmp_path / "bank.safetensors"
    assert main(["phantom", "--n", "1", "--size", "64", "--spacing", "0.2", "--out", str(bank_path)]) == 0
    out = tmp_path / "sweep"
    assert main(["synth", "--layers", str(bank_path), "--jsw", "0:1:0.5", "--out", str(out)]) == 0
    d = load_file(out / "sweep.safetensors")
    assert d["images"].shape == (3, 1, 64, 64)
    assert torch_allclose(d["jsw_mm"], [0.0, 0.5, 1.0])
    assert (out / "sweep_0000.png").exists()
    assert main(["synth", "--layers", str(bank_path), "--jsw=-1:1:0.5", "--out", str(out)]) == 2
    assert main(["synth", "--layers", str(bank_path), "--out", str(out)]) == 2  # --jsw missing
    assert main(["synth", "--layers", str(bank_path), "--jsw", "1", "--index", "5", "--out", str(out)]) == 2
    whole = tmp_path / "whole"  # centred whole-pixel sweep: labels are the JSWs reached, within 0.71 px
    assert main(["synth", "--layers", str(bank_path), "--jsw", "0.4:2:0.4", "--bone", "both", "--moves", "integer",
                 "--out", str(whole)]) == 0
    d = load_file(whole / "sweep.safetensors")
    target = torch.tensor([0.4, 0.8, 1.2, 1.6, 2.0])
    assert d["images"].shape == (5, 1, 64, 64) and bool(((d["jsw_mm"] - target).abs() <= 0.71 * 0.2 + 1e-5).all())
    assert not torch.equal(d["jsw_mm"], target)


def torch_allclose(t, values):
    import torch

    return torch.allclose(t, torch.tensor(values, dtype=t.dtype), atol=1e-6)
