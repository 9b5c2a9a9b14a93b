"""The C++ binding's detector ranges come from one table (issue 32): csrc/cpu/param_ranges.h is
generated from lsn_fast.physics.detector.PARAM_RANGES, and a stale header fails here."""

import importlib.util
import os

import pytest
import torch

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_param_ranges", os.path.join(ROOT, "scripts", "gen_param_ranges.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_header_matches_the_python_table():
    gen = _generator()
    with open(gen.HEADER, encoding="utf-8") as fh:
        committed = fh.read()
    assert committed == gen.header_text(), "csrc/cpu/param_ranges.h is stale: run python scripts/gen_param_ranges.py"


def test_the_binding_rejects_each_range_edge_by_name():
    """Direct ``_C`` callers (below the schema) get the same bounds, by name."""
    C = pytest.importorskip("lsn_fast._C")  # noqa: F841 (the binding under test)
    from lsn_fast.physics.detector import PARAM_COLUMNS, PARAM_RANGES
    import lsn_fast as lf

    st, _ = lf.phantom.generate(1, size=32, seed=0)
    base = lf.Detector().params(1, "cpu")
    for j, name in enumerate(PARAM_COLUMNS):
        lo, inclusive, hi = PARAM_RANGES[name]
        for bad in ([lo] if not inclusive else []) + [hi * 1.01 if hi > 0 else 1.0]:
            p = base.clone()
            p[0, j] = bad
            with pytest.raises(ValueError, match=name):
                _call_binding(C, st, p)


def _call_binding(C, st, params):
    """The cpu backend's launch on arguments the schema accepted, with ``params`` swapped in
    afterwards: only the binding's own check stands between them and the kernel."""
    import dataclasses

    from lsn_fast.ops.backends import cpu as cpu_backend
    from lsn_fast.ops.schema import prepare

    ok = prepare(st.soft, st.upper, st.lower, torch.zeros(1, dtype=torch.int64), torch.zeros(1, 2),
                 params.clamp(1e-3, 10.0), sample_index=torch.zeros(1, dtype=torch.int64), noise_mode=1)
    return cpu_backend.launch(dataclasses.replace(ok, params=params.contiguous()))
