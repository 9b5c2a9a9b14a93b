"""lsn_fast: Layer Separation Networks and fused kernels for adjustable-JSW radiograph synthesis.

Quick start::

    import lsn_fast as lf
    stack, info = lf.phantom.generate(8, size=256, spacing_mm=0.1, seed=0)
    images = lf.compose(stack, jsw_mm=1.0, detector=lf.Detector())   # (8,1,256,256)
    lf.measure_jsw(stack.with_jsw(1.0))                                 # ≈ 1.0 mm each

The physics and API contract live in the team's DESIGN.md (outside the repository); the docstrings
state shapes and units.
"""

from __future__ import annotations

import importlib

from lsn_fast.utils import deprecated as _deprecated

_deprecated.install()  # old flat module paths (lsn_fast.compose, ...) keep working for one release

from lsn_fast._version import __version__
from lsn_fast.ops.registry import backends, register_backend
from lsn_fast.synthesis.compose import compose, split_whole_pixel, synthesize, whole_pixel_moves
from lsn_fast.physics.detector import Detector
from lsn_fast.physics.layers import LayerStack, angle_from_axis, axis_from_angle

# Heavier or optional parts load on first use (keeps `import lsn_fast` fast).
_LAZY = {
    "phantom": ("lsn_fast.physics.phantom", None),
    "reference": ("lsn_fast.physics.reference", None),
    "io": ("lsn_fast.io", None),
    "viz": ("lsn_fast.viz", None),
    "measure_jsw": ("lsn_fast.physics.jsw", "measure_jsw"),
    "measure_jsw_profile": ("lsn_fast.physics.jsw", "measure_jsw_profile"),
    "estimate_axis": ("lsn_fast.physics.jsw", "estimate_axis"),
    "JSWMeasurement": ("lsn_fast.physics.jsw", "JSWMeasurement"),
    "LSN": ("lsn_fast.model.lsn", "LSN"),
    "separate": ("lsn_fast.model.lsn", "separate"),
    "JSWStream": ("lsn_fast.synthesis.stream", "JSWStream"),
    "quantify_jsn": ("lsn_fast.tasks.jsn", "quantify_jsn"),
    "tasks": ("lsn_fast.tasks", None),
}


def __getattr__(name):
    if name in _LAZY:
        mod_name, attr = _LAZY[name]
        mod = importlib.import_module(mod_name)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lsn_fast' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "__version__", "backends", "register_backend", "compose", "synthesize", "whole_pixel_moves",
    "split_whole_pixel", "Detector",
    "LayerStack", "axis_from_angle", "angle_from_axis", *_LAZY,
]
