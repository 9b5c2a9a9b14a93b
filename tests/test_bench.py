"""``lsn-fast bench`` (lsn_fast/bench.py): it runs, writes its tables, and times the same computation.

Timings are not asserted (benchmarks are not timed tests); what is checked is that each row is a
real measurement of the computation it names.
"""

import csv
import math

import torch

import lsn_fast as lf
from lsn_fast import bench
from lsn_fast.cli.main import main


def test_bench_quick_writes_tables(tmp_path):
    out = tmp_path / "bq"
    rc = main(["bench", "--quick", "--device", "cpu", "--impls", "eager,api,op", "--backends", "cpu,reference",
               "--no-plot", "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    impls = {r["impl"] for r in rows}
    assert {"eager", "api:cpu", "op:cpu", "api:reference"} <= impls
    for r in rows:
        assert not r["error"], r
        ms, floor = float(r["ms"]), float(r["floor_ms"])
        assert ms > 0 and math.isfinite(ms)
        assert math.isclose(float(r["floor_over_time"]), floor / ms, rel_tol=1e-6)
        # 3 layers + 1 image of 64^2 fp32 per sample, B = 8
        assert int(r["bytes"]) == 8 * 64 * 64 * 16
    md = (out / "results.md").read_text()
    assert "floor/time" in md and "copy bandwidth" in md and "lsn-fast bench" in md


def test_bench_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["bench", "--sizes", "0", "--out", str(tmp_path)]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert main(["bench", "--dtypes", "fp8", "--out", str(tmp_path)]) == 2
    assert "--dtypes" in capsys.readouterr().err
    assert main(["bench", "--blur", "-1", "--out", str(tmp_path)]) == 2


def test_eager_baseline_computes_the_same_image_as_compose():
    """The eager row (grid_sample + exp + randn) is the operator's computation: with a huge dose its noise
    vanishes and it must equal lsn_fast.compose's noiseless attenuation (interior, away from the clamp)."""
    bank = bench.make_bank(64, 4, torch.float32, "cpu")
    index = torch.tensor([2, 0, 3])
    shift = torch.tensor([0.3, 1.7, 2.45])
    axis, _ = bank.geometry()
    disp = (shift[:, None] * axis.index_select(0, index)).float()
    got = bench.eager_synth(bank.soft, bank.upper, bank.lower, index, disp, 1e14, None, torch.float32)
    want = lf.compose(bank[index], shift_px=shift, backend="reference")
    assert got.shape == want.shape == (3, 1, 64, 64)
    sl = (slice(None), 0, slice(4, -4), slice(4, -4))
    torch.testing.assert_close(got[sl], want[sl], atol=2e-4, rtol=1e-4)
