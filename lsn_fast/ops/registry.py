"""Backend registry: one operator, several implementations (DESIGN.md §3).

Each backend registers itself once with the devices it runs on, a priority for
``backend="auto"`` and a loader that imports it and returns the ops it provides. Resolution rules
(modelled on Liger-Kernel's registry):

* ``backend="auto"`` (and no ``LSN_FAST_BACKEND``): the highest-priority backend that runs on the
  tensors' device, imports, and provides the op; a backend that fails to import is skipped
  quietly, an op a backend lacks falls back to the next one, ``reference`` always works.
* a backend named explicitly (argument, or ``LSN_FAST_BACKEND=name`` in the environment) must
  load and must provide the op on that device, else a clear ``RuntimeError``/``ValueError``.

Every op of every backend has the signature of its reference in :mod:`lsn_fast.reference`
(e.g. ``synthesize`` ≡ :func:`lsn_fast.reference.synthesize_reference`) and receives inputs the
API layer has already validated.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class BackendSpec:
    name: str
    devices: tuple[str, ...]
    priority: int
    loader: Callable[[], dict[str, Callable]]
    doc: str = ""


_REGISTRY: dict[str, BackendSpec] = {}
_LOADED: dict[str, dict[str, Callable] | BaseException] = {}


def _is_device_type(d: str) -> bool:
    try:
        return torch.device(d).type == d
    except RuntimeError:
        return False


def register_backend(name: str, devices, priority: int, loader: Callable[[], dict[str, Callable]], doc: str = "") -> None:
    """Register (or replace) a backend. ``loader()`` imports it and returns ``{op_name: fn}``;
    it raises ``ImportError``/``RuntimeError`` when the backend cannot run here.

    Args:
        name: a non-empty string (what ``backend=`` selects).
        devices: device types it runs on, e.g. ``("cuda",)`` or ``("cpu", "cuda")``.
        priority: int; ``backend="auto"`` tries higher first (reference 0, cpu 20, cuda 25, triton 30).
        loader: a callable taking no arguments.
        doc: one line for listings.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    devices = (devices,) if isinstance(devices, str) else tuple(devices)
    if not devices or not all(isinstance(d, str) and _is_device_type(d) for d in devices):
        raise ValueError(f"devices: expected a tuple of device types such as ('cpu',) or ('cuda',), got {devices!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority: expected an int, got {type(priority).__name__}")
    if not callable(loader):
        raise TypeError(f"loader: expected a callable returning {{op_name: fn}}, got {type(loader).__name__}")
    _REGISTRY[name] = BackendSpec(name, devices, priority, loader, str(doc))
    _LOADED.pop(name, None)


def _load(name: str) -> dict[str, Callable] | BaseException:
    if name not in _LOADED:
        try:
            _LOADED[name] = _REGISTRY[name].loader()
        except Exception as e:  # ImportError, missing toolchain, no device...
            _LOADED[name] = e
    return _LOADED[name]


def backends() -> dict[str, bool]:
    """Which backends can run here: ``{"reference": True, "cpu": ..., "triton": ..., "cuda": ...}``."""
    return {name: not isinstance(_load(name), BaseException) for name in sorted(_REGISTRY, key=lambda n: -_REGISTRY[n].priority)}


def backend_error(name: str) -> BaseException | None:
    """Why a backend is unavailable (the exception its loader raised), or None."""
    r = _load(name)
    return r if isinstance(r, BaseException) else None


def resolve(op: str, device: torch.device | str, backend: str | None = "auto") -> tuple[str, Callable]:
    """Pick the implementation of ``op`` for tensors on ``device``.

    Returns:
        (backend name, function).
    """
    dev_type = torch.device(device).type
    if backend is None:
        backend = "auto"
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a string, got {type(backend).__name__}")
    if backend == "auto":
        env = os.environ.get("LSN_FAST_BACKEND", "").strip()
        if env and env != "auto":
            return _explicit(op, dev_type, env, source="LSN_FAST_BACKEND")
        for spec in sorted(_REGISTRY.values(), key=lambda s: -s.priority):
            if dev_type not in spec.devices:
                continue
            ops = _load(spec.name)
            if isinstance(ops, BaseException) or op not in ops:
                continue
            return spec.name, ops[op]
        raise RuntimeError(f"no backend provides {op!r} on device {dev_type}")  # pragma: no cover
    return _explicit(op, dev_type, backend, source="backend")


def _explicit(op: str, dev_type: str, name: str, source: str) -> tuple[str, Callable]:
    if name not in _REGISTRY:
        raise ValueError(f"{source}: unknown backend {name!r}; registered: {sorted(_REGISTRY)}")
    spec = _REGISTRY[name]
    if dev_type not in spec.devices:
        raise ValueError(f"{source}: backend {name!r} runs on {list(spec.devices)}, not on {dev_type} tensors")
    ops = _load(name)
    if isinstance(ops, BaseException):
        raise RuntimeError(f"{source}: backend {name!r} is not available here: {type(ops).__name__}: {ops}")
    if op not in ops:
        raise ValueError(f"{source}: backend {name!r} does not implement {op!r}")
    return name, ops[op]


# ---------------------------------------------------------------------------------- built-ins
def _load_reference():
    from lsn_fast.physics import reference

    def synthesize_args(a):  # the op's validated arguments (lsn_fast.ops.schema.SynthesizeArgs)
        return reference.synthesize_reference(a.soft, a.upper, a.lower, a.index, a.disp, a.params, **a.reference_kwargs())

    return {"synthesize": reference.synthesize_reference, "synthesize_args": synthesize_args,
            "translate": reference.translate}


def _load_cpu():
    mod = importlib.import_module("lsn_fast.ops.backends.cpu")
    return mod.OPS


def _triton_devices() -> tuple[str, ...]:
    # Under TRITON_INTERPRET=1 the Triton kernels run (slowly) on CPU tensors: tests use that.
    return ("cuda", "cpu") if os.environ.get("TRITON_INTERPRET", "0") == "1" else ("cuda",)


def _major_minor(version: str) -> tuple[int, int]:
    parts = (version.split("+")[0].split(".") + ["0", "0"])[:2]
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[str, str] | None:
    """(triton, numpy) versions, read once (the fused LSN kernels ask on every interpreted call),
    without importing triton (its environment is read at import)."""
    from importlib import metadata

    try:
        return metadata.version("triton"), metadata.version("numpy")
    except metadata.PackageNotFoundError:
        return None


def triton_interpreter_problem(triton_version: str | None = None, numpy_version: str | None = None) -> str | None:
    """Why Triton's CPU interpreter (``TRITON_INTERPRET=1``) cannot run the kernels here, or None.

    Triton before 3.7 turns the interpreter's 1-element arrays into Python ints with ``int()``,
    which NumPy 2.4 made a ``TypeError`` (triton-lang/triton#9171, fixed in Triton 3.7): every
    launch of a kernel with a loop bound taken from a program id then fails. Versions default to
    the installed ``triton`` and ``numpy``; compiled kernels on a GPU are not affected.
    """
    if triton_version is None or numpy_version is None:
        installed = _installed_versions()
        if installed is None:
            return None
        triton_version = triton_version or installed[0]
        numpy_version = numpy_version or installed[1]
    if _major_minor(triton_version) < (3, 7) and _major_minor(numpy_version) >= (2, 4):
        return (f"Triton {triton_version}'s interpreter (TRITON_INTERPRET=1) cannot run with NumPy {numpy_version} "
                "(triton-lang/triton#9171): install 'numpy<2.4' or 'triton>=3.7'")
    return None


def _load_triton():
    if os.environ.get("TRITON_INTERPRET", "0") != "1" and not torch.cuda.is_available():
        raise RuntimeError("Triton needs a CUDA device (or TRITON_INTERPRET=1 for the CPU interpreter)")
    if os.environ.get("TRITON_INTERPRET", "0") == "1" and (problem := triton_interpreter_problem()):
        raise RuntimeError(problem)
    mod = importlib.import_module("lsn_fast.ops.backends.triton")
    return mod.OPS


def _load_cuda():
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    mod = importlib.import_module("lsn_fast.ops.backends.cuda")
    return mod.OPS


register_backend("reference", ("cpu", "cuda"), 0, _load_reference, "eager PyTorch, differentiable ground truth")
register_backend("cpu", ("cpu",), 20, _load_cpu, "C++17 + OpenMP (csrc/cpu), pybind11")
register_backend("triton", _triton_devices(), 30, _load_triton, "fused Triton kernels (lsn_fast/ops/kernels)")
register_backend("cuda", ("cuda",), 25, _load_cuda, "CUDA C++ kernels (csrc/cuda)")
