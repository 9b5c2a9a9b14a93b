"""The fused operator's contract: one place that turns arguments into one validated argument set.

Every route to a kernel goes through :func:`prepare` — the public API (:func:`lsn_fast.compose`,
:func:`lsn_fast.synthesize`, :class:`lsn_fast.JSWStream`), the raw ``torch.ops.lsn_fast.synthesize``
op, and each backend's own public function — so a backend only builds pointers and launches.
The checks are what a kernel could trip over, all cheap; the value checks (index bounds, finite
and in-range detector parameters, finite displacements) are read back from the device in **one**
host transfer, together with the maxima that size a launch (blur radius, scatter, electronic
noise), which the GPU backends need on the host anyway.

Rules (the same on every backend):

* layers: three (N,H,W) tensors of one shape on one device; float32, float16 or bfloat16 are read
  in place (strided views too); float64 or mixed dtypes are computed in float32. NaN/Inf in the
  layers are *not* rejected here: they propagate to the output as in the reference (the public API
  rejects them earlier, where it can name the stack).
* ``index`` (B,) integer in [0, N); ``sample_index`` (B,) integer >= 0; ``disp`` (B,2) finite px,
  |disp| <= 1e6.
* ``params`` None or (B,5) float in the :data:`lsn_fast.physics.detector.PARAM_RANGES` (n0 > 0, blur
  σ <= 1000 px, ...), finite: a σ of 7e8 px would size a kernel of billions of taps.
* ``seed``: an int in [0, 2**64) (the API's range) or its int64 two's-complement form that the
  op's schema carries (in [-2**63, 0)); anything else is a ``ValueError``.
* ``noise_mode`` in {0, 1, 2}, ``output_mode`` in {0, 1}, ``interp`` ``"linear"``/``"cubic"`` (or
  its code 0/1), ``min_counts`` finite > 0, ``out_dtype`` float32/float16/bfloat16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral

import torch

from lsn_fast.physics.detector import NOISE_MODES, OUTPUT_MODES, PARAM_COLUMNS, PARAM_RANGES

#: storage / output dtypes the kernels read and write, with their codes in the native ABIs
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
OUT_DTYPES = tuple(DTYPE_CODES)
#: interpolation of the moved bone; the op's schema carries the position in this tuple
INTERP_NAMES = ("linear", "cubic")
INTERP_CODES = {name: i for i, name in enumerate(INTERP_NAMES)}
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
#: largest H·W: the Philox pixel counter is 32-bit
MAX_PIXELS = 2**31 - 1
#: largest |displacement| in px (a move of more than the image is meaningless; this keeps the
#: kernels' integer coordinates far from overflow)
MAX_DISP_PX = 1.0e6
SEED_MAX = 2**64


class SynthesizeArgumentError(ValueError):
    """A bad argument of the fused operator; the message starts with the argument's name."""


@dataclass(frozen=True)
class SynthesizeArgs:
    """The normalized arguments of one fused-operator call (see the module docstring).

    Tensors are on the layers' device: ``soft/upper/lower`` (N,H,W) of one dtype in
    :data:`DTYPE_CODES`; ``index``, ``sample_index`` (B,) int64 contiguous; ``disp`` (B,2) float32
    contiguous px; ``params`` (B,5) float32 contiguous or None. ``seed`` is unsigned, ``interp`` a
    name of :data:`INTERP_NAMES`. ``blur_radius`` (max ceil(3σ) px), ``any_scatter`` and
    ``any_electronic`` are the batch maxima the launch configuration needs.
    """

    soft: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor
    index: torch.Tensor
    disp: torch.Tensor
    params: torch.Tensor | None
    sample_index: torch.Tensor
    move_lower: bool
    seed: int
    noise_mode: int
    output_mode: int
    interp: str
    min_counts: float
    out_dtype: torch.dtype
    blur_radius: int = 0
    any_scatter: bool = False
    any_electronic: bool = False

    @property
    def batch(self) -> int:
        return int(self.index.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """The bank's (N, H, W)."""
        return tuple(int(v) for v in self.soft.shape)

    def reference_kwargs(self) -> dict:
        """Keyword arguments of :func:`lsn_fast.physics.reference.synthesize_reference`."""
        return dict(move_lower=self.move_lower, seed=self.seed, sample_index=self.sample_index,
                    noise_mode=self.noise_mode, output_mode=self.output_mode, interp=self.interp,
                    min_counts=self.min_counts, out_dtype=self.out_dtype)


def _fail(msg: str) -> SynthesizeArgumentError:
    return SynthesizeArgumentError(msg)


def normalize_seed(seed) -> int:
    """A seed in [0, 2**64), or the int64 two's-complement form of one, as an unsigned int."""
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed: expected an int in [0, 2**64), got {type(seed).__name__}")
    seed = int(seed)
    if not -(2**63) <= seed < SEED_MAX:
        raise _fail(f"seed: must lie in [0, 2**64), got {seed}")
    return seed + SEED_MAX if seed < 0 else seed


def seed_to_signed(seed: int) -> int:
    """A seed in [0, 2**64) -> the int64 the op's schema carries (two's complement)."""
    seed = normalize_seed(seed)
    return seed - SEED_MAX if seed >= 2**63 else seed


def interp_name(interp) -> str:
    """``"linear"``/``"cubic"`` or their codes 0/1 -> the name."""
    if isinstance(interp, str) and interp in INTERP_CODES:
        return interp
    if isinstance(interp, Integral) and not isinstance(interp, bool) and 0 <= int(interp) < len(INTERP_NAMES):
        return INTERP_NAMES[int(interp)]
    raise _fail(f"interp: expected 'linear' or 'cubic', got {interp!r}")


def _mode(v, name: str, table: dict) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral) or int(v) not in table.values():
        names = ", ".join(f"{c} ({n})" for n, c in table.items())
        raise _fail(f"{name}: expected one of {names}, got {v!r}")
    return int(v)


def _tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    return t


def _ints(t, name: str, batch: int | None, device) -> torch.Tensor:
    t = _tensor(t, name)
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name}: expected an integer tensor, got {t.dtype}")
    if t.ndim != 1 or t.numel() == 0 or (batch is not None and t.shape[0] != batch):
        want = "a non-empty (B,)" if batch is None else f"a ({batch},)"
        raise _fail(f"{name}: expected {want} tensor, got shape {tuple(t.shape)}")
    if t.device != device:
        raise _fail(f"{name}: on {t.device}, the layers are on {device}")
    return t.to(torch.int64).contiguous()


def prepare(soft, upper, lower, index, disp, params=None, *, move_lower: bool = False, seed=0, sample_index=None,
            noise_mode: int = 2, output_mode: int = 0, interp="linear", min_counts: float = 0.5,
            out_dtype: torch.dtype = torch.float32) -> SynthesizeArgs:
    """Validate and normalize one call of the fused operator (arguments of
    :func:`lsn_fast.physics.reference.synthesize_reference`). Raises ``TypeError`` or
    :class:`SynthesizeArgumentError` (a ``ValueError``) naming the argument; never touches memory
    outside the tensors given."""
    soft, upper, lower = _tensor(soft, "soft"), _tensor(upper, "upper"), _tensor(lower, "lower")
    if soft.ndim != 3 or upper.shape != soft.shape or lower.shape != soft.shape:
        raise _fail(f"soft, upper, lower: expected three (N,H,W) tensors of one shape, got "
                    f"{tuple(soft.shape)}, {tuple(upper.shape)}, {tuple(lower.shape)}")
    dev = soft.device
    for name, t in (("upper", upper), ("lower", lower)):
        if t.device != dev:
            raise _fail(f"{name}: on {t.device}, soft is on {dev}")
    for name, t in (("soft", soft), ("upper", upper), ("lower", lower)):
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    N, H, W = (int(v) for v in soft.shape)
    if N < 1 or H < 1 or W < 1:
        raise _fail(f"soft: empty bank {tuple(soft.shape)}")
    if H * W > MAX_PIXELS:
        raise _fail(f"soft: H*W = {H * W} px is too large (the noise counter is 32-bit)")
    layers = [soft, upper, lower]
    if len({t.dtype for t in layers}) != 1 or soft.dtype not in DTYPE_CODES:
        layers = [t.to(torch.float32) for t in layers]  # float64 or mixed: computed in float32
    layers = [t if all(s >= 0 for s in t.stride()) else t.contiguous() for t in layers]

    index = _ints(index, "index", None, dev)
    B = int(index.shape[0])
    disp = _tensor(disp, "disp")
    if not disp.is_floating_point() or tuple(disp.shape) != (B, 2):
        raise _fail(f"disp: expected a ({B}, 2) float tensor of px, got {tuple(disp.shape)} {disp.dtype}")
    if disp.device != dev:
        raise _fail(f"disp: on {disp.device}, the layers are on {dev}")
    disp = disp.to(torch.float32).contiguous()
    if sample_index is None:
        sample_index = torch.arange(B, device=dev, dtype=torch.int64)
    sample_index = _ints(sample_index, "sample_index", B, dev)
    if params is not None:
        params = _tensor(params, "params")
        if not params.is_floating_point() or tuple(params.shape) != (B, 5):
            raise _fail(f"params: expected a ({B}, 5) float tensor (columns {', '.join(PARAM_COLUMNS)}), "
                        f"got {tuple(params.shape)} {params.dtype}")
        if params.device != dev:
            raise _fail(f"params: on {params.device}, the layers are on {dev}")
        params = params.to(torch.float32).contiguous()
    if isinstance(move_lower, torch.Tensor) or not isinstance(move_lower, (bool, Integral)):
        raise TypeError(f"move_lower: expected a bool, got {type(move_lower).__name__}")
    seed = normalize_seed(seed)
    noise_mode = _mode(noise_mode, "noise_mode", NOISE_MODES)
    output_mode = _mode(output_mode, "output_mode", OUTPUT_MODES)
    interp = interp_name(interp)
    if isinstance(min_counts, bool) or not isinstance(min_counts, (int, float)) or not (
            math.isfinite(float(min_counts)) and float(min_counts) > 0):
        raise _fail(f"min_counts: expected a finite number > 0, got {min_counts!r}")
    if out_dtype not in DTYPE_CODES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype}")

    # One device -> host read: bounds, finiteness, and the per-column extremes of params.
    parts = [torch.stack(torch.aminmax(index)).to(torch.float64), sample_index.min().to(torch.float64).view(1),
             (torch.isfinite(disp).all() & (disp.abs() <= MAX_DISP_PX).all()).to(torch.float64).view(1)]
    if params is not None:
        parts += [params.amin(0).to(torch.float64), params.amax(0).to(torch.float64),
                  torch.isfinite(params).all().to(torch.float64).view(1)]
    stats = torch.cat(parts).tolist()
    if stats[0] < 0 or stats[1] >= N:
        raise _fail(f"index: values must lie in [0, {N}), got [{int(stats[0])}, {int(stats[1])}]")
    if stats[2] < 0:
        raise _fail(f"sample_index: must be >= 0, got min {int(stats[2])}")
    if stats[3] != 1.0:
        raise _fail(f"disp: must be finite and within {MAX_DISP_PX:g} px")
    radius, any_scatter, any_esig = 0, False, False
    if params is not None:
        lo, hi, finite = stats[4:9], stats[9:14], stats[14]
        if finite != 1.0:
            raise _fail("params: contains NaN or Inf")
        for j, name in enumerate(PARAM_COLUMNS):
            bound, inclusive, top = PARAM_RANGES[name]
            if lo[j] < bound or (lo[j] == bound and not inclusive) or hi[j] > top:
                op = ">=" if inclusive else ">"
                raise _fail(f"params: column {j} ({name}) must be {op} {bound:g} and <= {top:g}, "
                            f"got [{lo[j]:.6g}, {hi[j]:.6g}]")
        # float32 arithmetic, as the kernels: ceil(3.0f * sigma)
        radius = int(torch.ceil(torch.tensor(3.0, dtype=torch.float32) * torch.tensor(hi[3], dtype=torch.float32)))
        any_scatter, any_esig = hi[1] > 0, hi[4] > 0
    return SynthesizeArgs(*layers, index, disp, params, sample_index, bool(move_lower), seed, noise_mode,
                          output_mode, interp, float(min_counts), out_dtype, radius, any_scatter, any_esig)
