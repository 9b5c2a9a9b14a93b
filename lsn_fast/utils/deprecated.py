"""Old (flat) import paths of lsn_fast modules, kept for one release as deprecated aliases.

``import lsn_fast.compose`` (say) still works and returns :mod:`lsn_fast.synthesis.compose`, with a
``DeprecationWarning`` naming the new path. :func:`install` adds the finder once; ``lsn_fast``
calls it on import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module name -> new module name (the layout of issue 32, 2026-12-07)
MOVED = {
    "lsn_fast._validation": "lsn_fast.utils.validation",
    "lsn_fast.layers": "lsn_fast.physics.layers",
    "lsn_fast.detector": "lsn_fast.physics.detector",
    "lsn_fast.philox": "lsn_fast.physics.philox",
    "lsn_fast.reference": "lsn_fast.physics.reference",
    "lsn_fast.jsw": "lsn_fast.physics.jsw",
    "lsn_fast.phantom": "lsn_fast.physics.phantom",
    "lsn_fast.registry": "lsn_fast.ops.registry",
    "lsn_fast._cpu_backend": "lsn_fast.ops.backends.cpu",
    "lsn_fast._cuda_backend": "lsn_fast.ops.backends.cuda",
    "lsn_fast._triton_backend": "lsn_fast.ops.backends.triton",
    "lsn_fast.kernels": "lsn_fast.ops.kernels",
    "lsn_fast.kernels.synthesize": "lsn_fast.ops.kernels.synthesize",
    "lsn_fast.kernels.lsn_fused": "lsn_fast.ops.kernels.lsn_fused",
    "lsn_fast.compose": "lsn_fast.synthesis.compose",
    "lsn_fast.stream": "lsn_fast.synthesis.stream",
    "lsn_fast.export": "lsn_fast.synthesis.export",
    "lsn_fast.lsn": "lsn_fast.model.lsn",
    "lsn_fast.inference": "lsn_fast.model.inference",
    "lsn_fast.fused": "lsn_fast.model.fused",
    "lsn_fast.train": "lsn_fast.model.train",
    "lsn_fast.evaluate": "lsn_fast.model.evaluate",
    "lsn_fast.stage2_transfer": "lsn_fast.experiments.stage2_transfer",
    "lsn_fast.tasks.experiment": "lsn_fast.experiments.five_percent",
    "lsn_fast.tasks._common": "lsn_fast.tasks.common",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is deprecated: import {self.new}", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(self.new)
        self._kept = (module.__spec__, module.__loader__)  # the import system overwrites them next
        return module

    def exec_module(self, module):  # the target module is already executed: give back its own spec
        module.__spec__, module.__loader__ = self._kept


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


class _Package(types.ModuleType):
    """A package whose public attributes survive the import of an old path of the same name.

    After ``import lsn_fast.compose`` the import system binds the loaded module on its parent
    (``setattr(lsn_fast, "compose", module)``), which would replace the public *function*
    ``lsn_fast.compose``. The binding of an alias module over a non-module attribute is skipped."""

    def __setattr__(self, name, value):
        old = self.__dict__.get(name)
        if (isinstance(value, types.ModuleType) and old is not None and not isinstance(old, types.ModuleType)
                and MOVED.get(f"{self.__name__}.{name}") == value.__name__):
            return
        super().__setattr__(name, value)


def install(package: str = "lsn_fast") -> None:
    """Add the alias finder to ``sys.meta_path`` (idempotent) and protect ``package``'s public
    attributes from the alias modules of the same name (:class:`_Package`)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
    mod = sys.modules.get(package)
    if mod is not None and type(mod) is types.ModuleType:
        mod.__class__ = _Package
