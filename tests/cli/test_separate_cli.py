"""``lsn-fast separate`` without --center (every joint found) and its quality report (issue #33)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "io"))
from test_locate import SP, synthetic_hand  # noqa: E402

from lsn_fast.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def hand_png(tmp_path_factory):
    from PIL import Image

    img, _ = synthetic_hand()
    p = tmp_path_factory.mktemp("hand") / "hand.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
    return p


def test_separate_without_center_processes_every_joint(hand_png, tmp_path, capsys):
    out = tmp_path / "joints"
    assert main(["separate", str(hand_png), "--size", "64", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "estimated from anatomy" in captured.err  # the warning: spacing from anatomy, with its uncertainty
    meta = json.loads((out / "separation.json").read_text())
    assert meta["spacing_source"] == "anatomy" and meta["spacing_mm"] == pytest.approx(SP, rel=0.15)
    assert len(meta["joints"]) == 12
    for rec in meta["joints"]:
        q = rec["quality"]
        assert {"recomposition_error", "bone_fraction", "layer_consistency", "flagged", "reasons"} <= set(q)
        assert (out / rec["joint"] / "layers.safetensors").exists()
        assert abs((rec["angle_deg"] % 360) - 180.0) < 20.0  # fingers up: proximal bone below, turned on top
    printed = captured.out
    assert "found 12 joints" in printed and "recomposition" in printed


def test_separate_flags_a_crop_of_padding_and_noise(hand_png, tmp_path, capsys):
    out = tmp_path / "corner"
    # the image corner: background only, and half the crop outside the image
    assert main(["separate", str(hand_png), "--center", "2,2", "--spacing", str(SP), "--size", "64",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "separation.json").read_text())
    assert meta["quality"]["flagged"] and meta["quality"]["reasons"]
    assert "FLAGGED" in capsys.readouterr().out


def test_a_flagged_separation_is_refused_by_synth_and_the_stream(hand_png, tmp_path, capsys):
    """The flags travel with the layers (#33): ``lsn-fast separate`` stores them in
    layers.safetensors, ``lsn-fast synth --layers`` then exits 2 naming the reason unless
    ``--allow-flagged``, and ``JSWStream`` on the file refuses it unless ``on_flagged`` says so."""
    import lsn_fast as lf

    out = tmp_path / "corner"
    assert main(["separate", str(hand_png), "--center", "2,2", "--spacing", str(SP), "--size", "64",
                 "--out", str(out)]) == 0
    layers = out / "layers.safetensors"
    flagged, reasons = lf.LayerStack.read_flags(layers)
    assert flagged is not None and flagged.tolist() == [True] and reasons[0]
    capsys.readouterr()
    sweep = tmp_path / "sweep"
    assert main(["synth", "--layers", str(layers), "--jsw", "0.5,1.0", "--out", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "flagged" in err and "--allow-flagged" in err and reasons[0][0].split()[0] in err
    assert not (sweep / "sweep.safetensors").exists()
    with pytest.raises(ValueError, match="quality: bank entries \\[0\\] are flagged"):
        lf.JSWStream(str(layers), 2)
