"""``JSWStream``: an endless (or finite) stream of labelled radiographs from a bank of layer stacks.

One bank of layer stacks (phantoms, or LSN-separated real joints) becomes an unlimited family of
images with exact JSW labels (DESIGN.md §1): for every global sample index ``k`` the stream picks
a bank entry, a target JSW, which bone moves, detector settings and an augmentation, and runs
the fused operator (:func:`lsn_fast.synthesize`'s kernel) with the noise keyed by
``(seed, k, pixel)``.

Determinism contract
--------------------
**Sample k is a pure function of (seed, k)** (and of the stream's configuration and bank):

* every random choice for sample ``k`` is drawn from Philox-4x32-10 (:func:`lsn_fast.philox.philox4x32`)
  with key ``split_seed(seed)`` and counter ``(k & 0xffffffff, k >> 32, field, 1)``; the
  detector noise uses counter ``(pixel, k_lo, k_hi, 0)`` (stream word 0), so the two never
  collide. Fields (4 uint32 words each, ``u = (r + 0.5)·2**-32``)::

      field 0: bank entry, bone, JSW uniform, grade        field 1: n0, scatter, scatter_sigma_px, blur_sigma_px
      field 2: electronic_sigma, (reserved ×3)             field 3: flip, rotation, intensity scale, intensity shift
      field 4: relative loss within the grade, (reserved ×3)

* the images therefore do not depend on the batch size, on the number of DataLoader workers,
  on the torch.distributed rank / world size, or on resuming.

Sharding
--------
The samples of one process are split into *shards*: ``S = world_size × num_workers`` shards,
shard ``s = rank · num_workers + worker_id`` (``torch.utils.data.get_worker_info()`` and
``torch.distributed`` when initialized, or the explicit ``rank=`` / ``world_size=``).

* ``num_samples=N`` (finite epoch): shard ``s`` owns the contiguous global range
  ``[s·N // S, (s+1)·N // S)`` (plus ``epoch · N``, see :meth:`JSWStream.set_epoch`); the shards
  cover ``[0, N)`` exactly once. Batches are cut within a shard, so the last batch of each
  shard may be smaller than ``batch_size``; with ``drop_last=True`` it is dropped (those
  samples are then *not* produced in this epoch). For DDP, where every rank must run the same
  number of steps, pick ``N`` a multiple of ``world_size · num_workers · batch_size`` (or use
  the infinite stream).
* ``num_samples=None`` (infinite): shards interleave by batch: shard ``s``'s ``j``-th batch is
  the global range ``[(j·S + s)·B, (j·S + s + 1)·B)``; the union of the first ``j`` batches of all
  shards is exactly ``[0, j·S·B)``.

Resuming
--------
:meth:`JSWStream.state_dict` stores, per shard, how many samples of the current epoch have been
handed out; :meth:`JSWStream.load_state_dict` makes the *next* iteration start there (with the
same ``world_size × num_workers``). Without DataLoader workers the stream tracks this itself.
With workers, iterate through :meth:`JSWStream.loader` (a DataLoader that records every batch
it delivers), or call :meth:`JSWStream.record` with each batch's ``info`` yourself. A resumed
run yields exactly the batches the uninterrupted run would have yielded after the checkpoint.

JSW labels and grades
---------------------
The label is the exact JSW of the moved layers, ``JSW0 + shift · spacing``, where ``JSW0`` is the
bank entry's :func:`lsn_fast.measure_jsw` (measured once, cached on the bank). Targets are drawn
uniformly in ``jsw_mm=(lo, hi)``, from ``jsw_sampler`` (a callable mapping (B,) float64 uniforms
in (0, 1) to JSW in mm, or a ``torch.distributions.Distribution`` sampled by inverse CDF), or
``grade_balanced=True``: uniform over SvdH-like JSN grades 0–4 (same rule as
:func:`lsn_fast.tasks.svdh.svdh_grade`), with relative loss ``ℓ = 1 − JSW / JSW0`` against the
entry's baseline::

    grade 0: ℓ < 10 %   1: 10–33 %   2: 33–66 %   3: 66–90 %   4: ≥ 90 % (ankylosis, JSW ≤ 0.1·JSW0)

(the last threshold is the project's 90 %, not 99 %: a residual gap under ~0.1–0.2 mm is below
two pixels and cannot be told from contact), then ``ℓ`` uniform inside the grade's interval
(kept 1e-4 away from its ends so float32 labels re-grade identically). ``info["grade"]`` is
always returned (``svdh_grade(label, JSW0)``).

With ``moves="integer"`` the move that reaches a drawn target is rounded to whole pixels
(:func:`lsn_fast.whole_pixel_moves`): the moved bone is an exact copy of its layer, and
the label is the JSW that move reaches (the target within ≤ 0.71 px), so labels and grades are
still exact, for the JSW reached rather than the one drawn.

GPU overlap
-----------
On a CUDA device (``num_workers=0``), batches are generated on a dedicated ``torch.cuda.Stream``
``prefetch`` batches ahead; each batch records an event, the consumer's current stream waits on
it when the batch is handed out, and ``record_stream`` marks the tensors as used there. Per-batch
random draws are done on the CPU (a few hundred bytes) and copied from pinned memory; a bank kept
on the CPU is gathered per batch into pinned buffers and copied with ``non_blocking=True``. On
the CPU the stream generates synchronously; use DataLoader workers for parallelism.

Bank memory
-----------
A bank is three layers per entry: ``3 · H · W · bytes`` each. At 256² that is 393 KB (bf16/fp16)
or 786 KB (fp32) per entry; 1e5 entries ≈ 39.3 GB in bf16 (78.6 GB fp32). In bf16 it fits on one
H100 (80 GB, leaving ~40 GB for training) or an H200 (141 GB); fp32 fits only the H200 (or host
RAM: keep the bank on the CPU and let the stream gather batches through pinned memory). With
forked DataLoader workers a CPU bank is shared copy-on-write, not copied. See
:func:`bank_memory_bytes`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from dataclasses import asdict, dataclass
from typing import Iterator

import torch

from lsn_fast.utils.validation import check_int
from lsn_fast.physics.detector import PARAM_COLUMNS, Detector
from lsn_fast.physics.layers import LayerStack
from lsn_fast.physics.moves import BONES as MOVED_BONES, check_moves, whole_pixel_moves
from lsn_fast.physics.philox import MASK32, philox4x32, split_seed
from lsn_fast.physics.reference import rotate_about_centre
from lsn_fast.synthesis.render import render

__all__ = ["JSWStream", "Augment", "GRADE_EDGES", "bank_from_phantoms", "make_bank", "bank_memory_bytes", "BONES"]

BONES = ("upper", "lower", "random", "both")
ON_FLAGGED = ("refuse", "skip", "allow")
_STREAM_WORD = 1  # counter word 3: 0 = detector noise, 1 = the stream's per-sample draws
_F_MAIN, _F_DET_A, _F_DET_B, _F_AUG, _F_GRADE = 0, 1, 2, 3, 4
_N_FIELDS = 5
_GRADE_MARGIN = 1e-4
_PHANTOM_CHUNK = 512  # bank_from_phantoms: entry i = phantom (i % 512) of chunk i // 512 (fixed: part of the bank's definition)


def _grade_thresholds() -> tuple[float, ...]:
    from lsn_fast.tasks.svdh import SVDH_THRESHOLDS

    return tuple(float(t) for t in SVDH_THRESHOLDS)


def _grade_edges() -> tuple[float, ...]:
    return (0.0, *_grade_thresholds(), 1.0)


GRADE_EDGES = (0.0, 0.10, 0.33, 0.66, 0.90, 1.0)  # documentation copy; the code reads svdh.SVDH_THRESHOLDS


# ----------------------------------------------------------------------------------- helpers
def _draw_words(seed: int, k: torch.Tensor, n_fields: int = _N_FIELDS) -> torch.Tensor:
    """(B, 4·n_fields) int64 uint32 words for global sample indices ``k`` (CPU int64)."""
    k0, k1 = split_seed(seed)
    k = k.to(torch.int64).view(-1, 1)
    B = k.shape[0]
    c0 = (k & MASK32).expand(B, n_fields)
    c1 = ((k >> 32) & MASK32).expand(B, n_fields)
    c2 = torch.arange(n_fields, dtype=torch.int64).view(1, -1).expand(B, n_fields)
    c3 = torch.full((B, n_fields), _STREAM_WORD, dtype=torch.int64)
    r = philox4x32(c0, c1, c2, c3, k0, k1)
    return torch.stack(r, dim=-1).reshape(B, 4 * n_fields)  # word (field f, j) at column 4f + j


def _uniform(r: torch.Tensor) -> torch.Tensor:
    """uint32 words -> float64 uniforms in (0, 1), 32 bits."""
    return (r.to(torch.float64) + 0.5) * (2.0**-32)


def _word(words: torch.Tensor, field: int, j: int) -> torch.Tensor:
    return words[:, 4 * field + j]


def _check_range(v, name: str, *, nonneg: bool = False) -> tuple[float, float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = (v, v)
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (lo, hi), got {v!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: lo and hi must be finite, got ({lo}, {hi})")
    if nonneg and lo < 0:
        raise ValueError(f"{name}: lo must be >= 0 mm (bones may not interpenetrate), got {lo}")
    if hi < lo:
        raise ValueError(f"{name}: hi must be >= lo, got ({lo}, {hi})")
    return lo, hi


def bank_memory_bytes(n: int, size=256, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of a bank of ``n`` stacks of ``size`` (int or (H, W)) px: ``3 · n · H · W · itemsize``.

    ``bank_memory_bytes(100_000, 256, torch.bfloat16)`` ≈ 39.3e9 (fp32: 78.6e9).
    """
    H, W = (size, size) if isinstance(size, int) else size
    return 3 * int(n) * int(H) * int(W) * torch.empty((), dtype=dtype).element_size()


def _chunk_seed(seed: int, chunk: int) -> int:
    """A phantom seed per chunk (splitmix64 of (seed, chunk)), < 2**63."""
    x = (seed * 0x9E3779B97F4A7C15 + chunk + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) >> 1


def bank_from_phantoms(
    n: int,
    size=256,
    spacing_mm: float = 0.1,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    *,
    jsw_mm=None,
    device="cpu",
    progress: bool = True,
    return_info: bool = False,
):
    """A bank of ``n`` phantom layer stacks (:func:`lsn_fast.phantom.generate`), built in chunks.

    Entry ``i`` is phantom ``i % 512`` of ``generate(·, seed=splitmix(seed, i // 512))``, so
    the bank's first entries are the same for every ``n``. Memory: :func:`bank_memory_bytes`
    (1e5 entries of 256² in bf16 ≈ 39 GB: allocate only what fits, see the module docstring).

    Args:
        n: number of entries (>= 1). size: int or (H, W). spacing_mm: pixel spacing in mm.
        seed: int >= 0. dtype: storage dtype (bf16/fp16 halve the memory; the kernels compute in
            float32). jsw_mm: baseline JSW of the phantoms (None: uniform in [0, 3] mm; a float;
            or n values). device: where the bank lives. progress: tqdm bar over the entries.
        return_info: also return ``{"jsw_mm": (n,) true baseline JSW, "tilt_deg": (n,)}``.
    Returns:
        LayerStack (n, H, W) with the true axis set (and the info dict with ``return_info``).
    """
    from lsn_fast.physics.phantom import generate

    check_int(n, "n", 1)
    check_int(seed, "seed", 0)
    H, W = (size, size) if isinstance(size, int) else tuple(size)
    jsw_all = None
    if jsw_mm is not None and not isinstance(jsw_mm, (int, float)):
        jsw_all = torch.as_tensor(jsw_mm, dtype=torch.float64).reshape(-1)
        if jsw_all.numel() != n:
            raise ValueError(f"jsw_mm: expected a float or {n} values, got {jsw_all.numel()}")
    soft = upper = lower = axis = None
    true_jsw, tilt = torch.empty(n), torch.empty(n)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="bank", unit="stack")
        except ImportError:  # pragma: no cover
            bar = None
    for c, b0 in enumerate(range(0, n, _PHANTOM_CHUNK)):
        b1 = min(n, b0 + _PHANTOM_CHUNK)
        jc = jsw_mm if jsw_all is None else jsw_all[b0:b1].tolist()
        st, info = generate(b1 - b0, size=(H, W), spacing_mm=spacing_mm, seed=_chunk_seed(seed, c), jsw_mm=jc,
                            device=device, dtype=dtype)
        if soft is None:
            soft = torch.empty((n, H, W), dtype=dtype, device=device)
            upper, lower = torch.empty_like(soft), torch.empty_like(soft)
            axis = torch.empty((n, 2), dtype=torch.float32, device=device)
            sp = st.spacing_mm
        soft[b0:b1], upper[b0:b1], lower[b0:b1] = st.soft, st.upper, st.lower
        axis[b0:b1] = st.axis
        true_jsw[b0:b1], tilt[b0:b1] = info["jsw_mm"], info["tilt_deg"]
        if bar is not None:
            bar.update(b1 - b0)
    if bar is not None:
        bar.close()
    bank = LayerStack(soft, upper, lower, sp, axis, validate=False)
    return (bank, {"jsw_mm": true_jsw, "tilt_deg": tilt}) if return_info else bank


def make_bank(source=None, *, n: int | None = None, size=256, spacing_mm: float = 0.1, seed: int = 0,
              dtype: torch.dtype | None = None, device=None, progress: bool = True) -> LayerStack:
    """A bank from a LayerStack (converted to ``dtype`` / ``device``), a ``.safetensors``/``.npz``
    path (:meth:`LayerStack.load`), or phantoms (``source=None`` with ``n``, see
    :func:`bank_from_phantoms`; default dtype bfloat16)."""
    if isinstance(source, LayerStack):
        bank = source
    elif isinstance(source, (str, os.PathLike)):
        bank = LayerStack.load(source)
    elif source is None:
        if n is None:
            raise ValueError("n: give the number of phantoms (or a bank / path as source)")
        return bank_from_phantoms(n, size, spacing_mm, seed, dtype or torch.bfloat16, device=device or "cpu", progress=progress)
    else:
        raise TypeError(f"source: expected a LayerStack, a path or None, got {type(source).__name__}")
    if dtype is not None or device is not None:
        kw = {}
        if dtype is not None:
            kw["dtype"] = dtype
        if device is not None:
            kw["device"] = device
        bank = bank.to(**kw)
    return bank


# ----------------------------------------------------------------------------------- augment
@dataclass
class Augment:
    """On-device augmentation after synthesis; every choice keyed by (seed, k) (field 3).

    Args:
        hflip: probability of a left–right flip (does not change the JSW).
        rotate_deg: rotation uniform in ``[-rotate_deg, rotate_deg]`` about the image centre
            (bilinear, border padding; the JSW, a physical gap, is rotation invariant; the noise
            is resampled, i.e. slightly smoothed, by the interpolation).
        intensity_scale: (lo, hi) multiplicative factor on the output image.
        intensity_shift: (lo, hi) additive offset on the output image.
    """

    hflip: float = 0.5
    rotate_deg: float = 5.0
    intensity_scale: tuple[float, float] = (0.9, 1.1)
    intensity_shift: tuple[float, float] = (-0.05, 0.05)

    def __post_init__(self):
        if not (isinstance(self.hflip, (int, float)) and 0.0 <= float(self.hflip) <= 1.0):
            raise ValueError(f"augment: hflip must be a probability in [0, 1], got {self.hflip!r}")
        if not (isinstance(self.rotate_deg, (int, float)) and 0.0 <= float(self.rotate_deg) <= 45.0):
            raise ValueError(f"augment: rotate_deg must lie in [0, 45], got {self.rotate_deg!r}")
        self.intensity_scale = _check_range(self.intensity_scale, "augment: intensity_scale")
        if self.intensity_scale[0] <= 0:
            raise ValueError(f"augment: intensity_scale must be > 0, got {self.intensity_scale}")
        self.intensity_shift = _check_range(self.intensity_shift, "augment: intensity_shift")


def _as_augment(augment) -> Augment | None:
    if augment is None or augment is False:
        return None
    if augment is True:
        return Augment()
    if isinstance(augment, Augment):
        return augment
    if isinstance(augment, dict):
        try:
            return Augment(**augment)
        except TypeError as e:
            raise ValueError(f"augment: {e}") from None
    raise TypeError(f"augment: expected None, True, an Augment or a dict, got {type(augment).__name__}")


# ----------------------------------------------------------------------------------- stream
class _ICDF:
    """Inverse-CDF sampling of a torch.distributions object (picklable, for DataLoader workers)."""

    def __init__(self, dist):
        self.dist = dist

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.dist.icdf(u.to(torch.float32)).to(torch.float64)

    def __repr__(self) -> str:
        return f"icdf({self.dist!r})"


def _flag_mask(quality, n: int) -> torch.Tensor | None:
    """(n,) bool of the flagged bank entries from ``quality``: an object with ``.flagged`` (a
    ``SeparationQuality``, the ``LayerFlags`` stored with a bank file) or a bool sequence."""
    if quality is None:
        return None
    fl = getattr(quality, "flagged", quality)
    try:
        fl = torch.as_tensor(fl)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"quality: expected a SeparationQuality or an ({n},) bool tensor, got {type(quality).__name__}") from None
    if fl.dtype != torch.bool or fl.numel() != n:
        raise ValueError(f"quality: expected {n} bool flags (one per bank entry), got {fl.numel()} of {fl.dtype}")
    return fl.reshape(-1).cpu()


def _flag_text(quality, bad: torch.Tensor) -> str:
    reasons = getattr(quality, "reasons", None)
    if not reasons:
        return "no reasons recorded"
    first = int(bad[0])
    r = reasons[first] if first < len(reasons) else []
    return f"entry {first}: " + ("; ".join(r) if isinstance(r, (list, tuple)) else str(r) or "flagged")


class JSWStream(torch.utils.data.IterableDataset):
    """Batches ``(images (B,1,H,W), jsw_mm (B,), info)`` synthesized from a bank of layer stacks.

    Both a ``torch.utils.data.IterableDataset`` (use ``DataLoader(stream, batch_size=None,
    num_workers=...)`` or :meth:`loader`) and a plain iterable. See the module docstring for the
    determinism, sharding and resume contract.

    Args:
        bank: LayerStack (N,H,W) on any device, any float storage dtype (``bank.to(torch.bfloat16)``
            halves the memory), or a path to a ``.safetensors``/``.npz`` file
            (:meth:`LayerStack.load`).
        batch_size: samples per batch, >= 1.
        jsw_mm: ``(lo, hi)`` mm, ``0 <= lo <= hi``: targets drawn uniformly (or a float: fixed).
        detector: :class:`Detector` with scalar fields (the base values), or None for the
            noiseless attenuation image (unless ``detector_ranges`` is given: then ``Detector()``).
        seed: int in [0, 2**64): keys every random choice and the noise.
        device: where images are made (default: the bank's device). A CPU bank with a CUDA device
            is gathered per batch through pinned memory.
        num_samples: samples per epoch (finite, sharded exactly), or None (infinite).
        jsw_sampler: callable ``f(u) -> jsw_mm`` on (B,) float64 uniforms in (0, 1) (must act
            elementwise), or a ``torch.distributions.Distribution`` with ``icdf``.
        grade_balanced: targets uniform over JSN grades 0–4 relative to each entry's JSW0.
        bone: ``"upper"``, ``"lower"``, ``"random"`` (50/50 per sample) or ``"both"`` (each
            bone moves half the shift, so the gap stays centred in the crop as in real
            joint-centred crops; the lower bone's move runs in PyTorch before the fused pass,
            which moves the upper bone: about 1.5–2× a one-bone sample's time on one CPU
            thread, ``lab/2026-12-02-stream-whole-pixel/``).
        bank_index: None (entry uniform over the bank's entries with a measurable JSW), a 1-D
            int sequence/tensor (fixed order: sample k uses ``bank_index[k % len]``), or a
            callable ``f(u) -> (B,) int64`` entries from (B,) float64 uniforms.
        detector_ranges: ``{field: (lo, hi)}`` or ``{field: (lo, hi, "log")}``, drawn per sample,
            fields of ``detector.PARAM_COLUMNS`` (n0, scatter, scatter_sigma_px, blur_sigma_px,
            electronic_sigma).
        augment: None, True (``Augment()`` defaults), a dict or an :class:`Augment`.
        out_dtype: float32, float16 or bfloat16 images.
        backend: kernel backend (``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"``, ``"cuda"``).
        drop_last: drop each shard's last partial batch (finite streams).
        prefetch: batches generated ahead on the CUDA side stream (>= 0; CUDA only).
        rank, world_size: override torch.distributed's (both or neither).
        quality: the bank's quality flags: a :class:`lsn_fast.SeparationQuality` (``separate(...,
            return_quality=True)``) or an (N,) bool tensor; default: the flags stored in the bank's
            file (:meth:`LayerStack.save`, as ``lsn-fast separate`` writes them), if any: a
            :class:`~lsn_fast.physics.layers.LayerFlags`.
        on_flagged: what to do with flagged entries: ``"refuse"`` (default; ``ValueError`` naming
            them and why), ``"skip"`` (draw only the others), ``"allow"`` (use them, with a warning).
        interp: ``"linear"`` or ``"cubic"`` bone resampling (sub-pixel moves).
        moves: ``"subpixel"`` (default): the bone moves by exactly the shift that reaches the drawn
            target, resampled with ``interp`` (which smooths its edge slightly); ``"integer"``:
            whole-pixel moves only (:func:`lsn_fast.whole_pixel_moves`), exact copies of
            the bone layer, and the label is the JSW the move reaches: the drawn target rounded,
            within ``0.5·(|ax_y|+|ax_x|)`` px ≤ 0.71 px (so labels may leave ``jsw_mm`` by that
            much, and ``grade_balanced`` grades are of the reached JSW). Use it with banks that
            carry their source's noise and texture (:meth:`LayerStack.with_residual`, no
            detector): a linear sub-pixel move keeps 46 % of the power of the noise carried in the
            moved bone (cubic 67 %), a whole-pixel move all of it
            (``lab/2026-12-02-stream-whole-pixel/``). ``info["disp_px"]`` (B,2) holds the
            whole-pixel displacement of the upper bone (``bone="both"``: split by
            :func:`lsn_fast.split_whole_pixel`).

    Yields ``(images, jsw_mm, info)``; images and labels on ``device``, ``info`` on the CPU::

        index (B,) int64 global sample indices      bank_index (B,) int64     bone (B,) int64: 0 upper, 1 lower, 2 both
        jsw0_mm (B,) baseline JSW of the entry       shift_px (B,) float32     grade (B,) int64 (0–4)
        detector: {field: (B,) float32} (if a detector is used)
        disp_px (B,2) float32 whole-pixel displacement of the upper bone (if moves="integer")
        augment: {hflip (B,) bool, rotate_deg, intensity_scale, intensity_shift} (if augment)
        shard, num_shards, cursor (samples of the shard consumed after this batch), rank,
        world_size, worker, num_workers, epoch: ints (bookkeeping for resume)
    """

    def __init__(
        self,
        bank,
        batch_size: int,
        jsw_mm=(0.0, 3.0),
        detector: Detector | None = None,
        seed: int = 0,
        device=None,
        num_samples: int | None = None,
        *,
        jsw_sampler=None,
        grade_balanced: bool = False,
        bone: str = "upper",
        bank_index=None,
        detector_ranges: dict | None = None,
        augment=None,
        out_dtype: torch.dtype = torch.float32,
        backend: str = "auto",
        drop_last: bool = False,
        prefetch: int = 2,
        rank: int | None = None,
        world_size: int | None = None,
        interp: str = "linear",
        moves: str = "subpixel",
        quality=None,
        on_flagged: str = "refuse",
    ):
        super().__init__()
        # ---- bank
        if on_flagged not in ON_FLAGGED:
            raise ValueError(f"on_flagged: expected one of {list(ON_FLAGGED)}, got {on_flagged!r}")
        if isinstance(bank, (str, os.PathLike)):
            bank, stored = LayerStack.load(bank, return_flags=True)
            if quality is None and stored.flagged is not None:
                quality = stored
        if not isinstance(bank, LayerStack):
            raise TypeError(f"bank: expected a LayerStack or a path to a saved one, got {type(bank).__name__}")
        if bank.batch_size < 1 or bank.soft.numel() == 0:
            raise ValueError("bank: empty bank")
        self.bank = bank
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.num_samples = None if num_samples is None else check_int(num_samples, "num_samples", 1)
        split_seed(seed)
        self.seed = seed
        if bone not in BONES:
            raise ValueError(f"bone: expected one of {BONES}, got {bone!r}")
        self.bone = bone
        self.drop_last = bool(drop_last)
        self.prefetch = check_int(prefetch, "prefetch", 0)
        self.moves, self.interp = check_moves(moves, interp)
        if out_dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype}")
        self.out_dtype = out_dtype
        try:
            self.device = bank.device if device is None else torch.device(device)
        except (TypeError, RuntimeError) as e:
            raise ValueError(f"device: {e}") from None
        if self.device.type == "cuda" and self.device.index is None and torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {self.device} requested but CUDA is not available")
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected a cpu or cuda device, got {self.device}")
        if self.device != bank.device and not (bank.device.type == "cpu" and self.device.type == "cuda"):
            raise ValueError(f"device: a bank on {bank.device} can feed its own device or, from the CPU, a CUDA device; got {self.device}")
        from lsn_fast.ops.registry import resolve

        resolve("synthesize", self.device, backend)  # clear error now for a bad / unavailable backend
        self.backend = backend
        # ---- rank / world size
        if (rank is None) != (world_size is None):
            raise ValueError("rank, world_size: give both or neither")
        if world_size is not None:
            world_size, rank = check_int(world_size, "world_size", 1), check_int(rank, "rank", 0)
            if rank >= world_size:
                raise ValueError(f"rank: must be < world_size ({world_size}), got {rank}")
        self.rank, self.world_size = rank, world_size
        # ---- JSW
        self.jsw_range = _check_range(jsw_mm, "jsw_mm", nonneg=True)
        if jsw_sampler is not None and grade_balanced:
            raise ValueError("jsw_sampler, grade_balanced: give at most one of them")
        self.grade_balanced = bool(grade_balanced)
        self.jsw_sampler = self._check_sampler(jsw_sampler)
        # ---- detector
        if detector is not None and not isinstance(detector, Detector):
            raise TypeError(f"detector: expected lsn_fast.Detector or None, got {type(detector).__name__}")
        if detector is None and detector_ranges:
            detector = Detector()
        self.detector = detector
        self.detector_ranges = self._check_detector_ranges(detector_ranges or {})
        self._base_params = None
        if detector is not None:
            for f in PARAM_COLUMNS:
                v = getattr(detector, f)
                if isinstance(v, torch.Tensor) and v.numel() != 1:
                    raise ValueError(f"detector: field {f} is a per-sample tensor; a stream draws per-sample values "
                                     f"from detector_ranges={{'{f}': (lo, hi)}} instead")
            self._base_params = detector.params(1, "cpu")  # validates every field
        self.augment = _as_augment(augment)
        # ---- geometry (once; cached on the bank and shared with lsn_fast.synthesize)
        axis, jsw0 = bank.geometry()
        self._axis_cpu = axis.detach().to("cpu", torch.float32)
        self._jsw0_cpu = jsw0.detach().to("cpu", torch.float32)
        measurable = ~torch.isnan(self._jsw0_cpu)
        self.flagged = _flag_mask(quality, bank.batch_size)
        self.on_flagged = on_flagged
        usable = measurable
        if self.flagged is not None and bool(self.flagged.any()):
            bad = torch.nonzero(self.flagged).flatten()
            why = _flag_text(quality, bad)
            if on_flagged == "refuse":
                raise ValueError(f"quality: bank entries {bad[:8].tolist()}{' …' if bad.numel() > 8 else ''} are flagged by "
                                 f"their quality check ({why}); their layers should not be trusted. Pass "
                                 "on_flagged='skip' to draw only the other entries, or 'allow' to use them anyway")
            if on_flagged == "skip":
                usable = measurable & ~self.flagged
                if not bool(usable.any()):
                    raise ValueError("quality: every measurable bank entry is flagged; nothing left to draw (on_flagged='skip')")
            else:
                warnings.warn(f"JSWStream: {bad.numel()} flagged bank entries are used (on_flagged='allow'): {why}",
                              stacklevel=2)
        if not bool(measurable.any()):
            raise ValueError("bank: no entry has a measurable JSW (no line crosses both bones)")
        self._valid = torch.nonzero(usable).flatten()
        self.bank_index = self._check_bank_index(bank_index)
        # ---- bookkeeping
        self.epoch = 0
        self._start: dict[int, int] = {}
        self._start_shards: int | None = None
        self._progress: dict[int, int] = {}
        self._num_shards: int | None = None
        self._rank_shards: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ validation helpers
    def _check_sampler(self, s):
        if s is None:
            return None
        if isinstance(s, torch.distributions.Distribution):
            try:
                s.icdf(torch.tensor([0.5], dtype=torch.float64))
            except NotImplementedError:
                raise ValueError(f"jsw_sampler: {type(s).__name__} has no icdf; pass a callable of uniforms instead") from None
            s = _ICDF(s)
        if not callable(s):
            raise TypeError(f"jsw_sampler: expected a callable of uniforms or a torch.distributions object, got {type(s).__name__}")
        probe = torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64)
        out = torch.as_tensor(s(probe))
        if out.shape != (3,):
            raise ValueError(f"jsw_sampler: must map (B,) uniforms to (B,) JSW values, got shape {tuple(out.shape)} for B = 3")
        return s

    def _check_detector_ranges(self, ranges: dict) -> dict:
        if not isinstance(ranges, dict):
            raise TypeError(f"detector_ranges: expected a dict field -> (lo, hi), got {type(ranges).__name__}")
        out = {}
        for f, v in ranges.items():
            if f not in PARAM_COLUMNS:
                raise ValueError(f"detector_ranges: unknown field {f!r}; expected one of {list(PARAM_COLUMNS)}")
            log = False
            if isinstance(v, (tuple, list)) and len(v) == 3:
                if v[2] not in ("log", "linear"):
                    raise ValueError(f"detector_ranges[{f!r}]: third item must be 'log' or 'linear', got {v[2]!r}")
                log, v = v[2] == "log", v[:2]
            lo, hi = _check_range(v, f"detector_ranges[{f!r}]")
            for x in (lo, hi):  # validates with Detector's own rules (names the field)
                try:
                    self.detector.replace(**{f: x}).params(1)
                except ValueError as e:
                    raise ValueError(f"detector_ranges[{f!r}]: {e}") from None
            if log and lo <= 0:
                raise ValueError(f"detector_ranges[{f!r}]: a log range needs lo > 0, got {lo}")
            out[f] = (lo, hi, log)
        return out

    def _check_bank_index(self, bi):
        if bi is None or callable(bi):
            return bi
        t = torch.as_tensor(bi)
        if t.numel() == 0:
            raise ValueError("bank_index: empty")
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"bank_index: expected integer entries, got {t.dtype}")
        t = t.reshape(-1).to(torch.int64).cpu()
        if t.numel() == 0:
            raise ValueError("bank_index: empty")
        N = self.bank.batch_size
        if bool(((t < 0) | (t >= N)).any()):
            raise ValueError(f"bank_index: entries must lie in [0, {N}), got [{int(t.min())}, {int(t.max())}]")
        bad = torch.isnan(self._jsw0_cpu[t])
        if bool(bad.any()):
            raise ValueError(f"bank_index: entries {t[bad].unique()[:8].tolist()} have no measurable JSW")
        if self.flagged is not None and self.on_flagged == "skip" and bool(self.flagged[t].any()):
            raise ValueError(f"bank_index: entries {t[self.flagged[t]].unique()[:8].tolist()} are flagged "
                             "(on_flagged='skip')")
        return t

    # ------------------------------------------------------------------ sampling plan (CPU)
    def draws(self, index) -> dict:
        """Every per-sample choice for global indices ``index`` (CPU), without synthesizing.

        Returns a dict of (B,) CPU tensors: index, bank_index, bone (0/1), jsw_mm (target),
        jsw0_mm, shift_px, grade, detector params ``params`` (B,5) or None, augment values.
        """
        k = torch.as_tensor(index)
        if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
            raise TypeError(f"index: expected integer global sample indices, got {k.dtype}")
        k = k.to(torch.int64).reshape(-1).cpu()
        if k.numel() == 0:
            raise ValueError("index: empty batch")
        if bool((k < 0).any()):
            raise ValueError("index: global sample indices must be >= 0")
        B = k.shape[0]
        w = _draw_words(self.seed, k)
        N = self.bank.batch_size
        # bank entry
        if self.bank_index is None:
            M = self._valid.numel()
            entry = self._valid[(_word(w, _F_MAIN, 0) * M) >> 32]
        elif isinstance(self.bank_index, torch.Tensor):
            entry = self.bank_index[k % self.bank_index.numel()]
        else:
            entry = torch.as_tensor(self.bank_index(_uniform(_word(w, _F_MAIN, 0)))).reshape(-1)
            if entry.shape != (B,) or entry.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"bank_index: the sampler must return ({B},) int64 entries, got {tuple(entry.shape)} {entry.dtype}")
            entry = entry.to(torch.int64).cpu()
            if bool(((entry < 0) | (entry >= N)).any()):
                raise ValueError(f"bank_index: the sampler returned entries outside [0, {N})")
            if bool(torch.isnan(self._jsw0_cpu[entry]).any()):
                raise ValueError("bank_index: the sampler returned entries without a measurable JSW")
        # bone
        if self.bone == "random":
            bone = _word(w, _F_MAIN, 1) >> 31
        else:
            bone = torch.full((B,), {"upper": 0, "lower": 1, "both": 2}[self.bone], dtype=torch.int64)
        jsw0 = self._jsw0_cpu[entry]
        # target JSW
        u = _uniform(_word(w, _F_MAIN, 2))
        if self.grade_balanced:
            edges = torch.tensor(_grade_edges(), dtype=torch.float64)
            g = (_word(w, _F_MAIN, 3) * 5) >> 32
            lo = edges[g] + torch.where(g > 0, _GRADE_MARGIN, 0.0)
            hi = edges[g + 1] - torch.where(g < 4, _GRADE_MARGIN, 0.0)
            loss = lo + (hi - lo) * _uniform(_word(w, _F_GRADE, 0))
            target = (jsw0.to(torch.float64) * (1.0 - loss)).clamp_min(0.0).to(torch.float32)
        elif self.jsw_sampler is not None:
            target = torch.as_tensor(self.jsw_sampler(u)).reshape(-1).to("cpu", torch.float32)
            if target.shape != (B,):
                raise ValueError(f"jsw_sampler: returned shape {tuple(target.shape)}, expected ({B},)")
            if not bool(torch.isfinite(target).all()) or bool((target < 0).any()):
                raise ValueError(f"jsw_sampler: produced a JSW < 0 or non-finite (min {float(target.min()):.4g} mm); bones may not interpenetrate")
        else:
            lo, hi = self.jsw_range
            target = (lo + (hi - lo) * u).to(torch.float32)
        disp = None
        if self.moves == "integer":  # whole-pixel moves: the label becomes the JSW reached
            axis = self._axis_cpu[entry]
            target, disp = whole_pixel_moves(jsw0, target, axis, self.bank.spacing_mm)
            shift = (disp * axis).sum(dim=1)
        else:
            shift = (target - jsw0) / self.bank.spacing_mm
        from lsn_fast.tasks.svdh import svdh_grade

        grade = svdh_grade(target, jsw0.clamp_min(1e-6), _grade_thresholds())
        out = {"index": k, "bank_index": entry, "bone": bone, "jsw_mm": target, "jsw0_mm": jsw0,
               "shift_px": shift, "grade": grade, "params": None}
        if disp is not None:
            out["disp_px"] = disp
        # detector
        if self._base_params is not None:
            params = self._base_params.expand(B, len(PARAM_COLUMNS)).clone()
            words = {f: _word(w, _F_DET_A, j) for j, f in enumerate(PARAM_COLUMNS[:4])}
            words[PARAM_COLUMNS[4]] = _word(w, _F_DET_B, 0)
            for f, (lo, hi, log) in self.detector_ranges.items():
                uu = _uniform(words[f])
                v = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * uu) if log else lo + (hi - lo) * uu
                if log:
                    v = v.clamp(lo, hi)
                params[:, PARAM_COLUMNS.index(f)] = v.to(torch.float32)
            out["params"] = params
        # augmentation
        if self.augment is not None:
            a = self.augment
            s0, s1 = a.intensity_scale
            o0, o1 = a.intensity_shift
            out["augment"] = {
                "hflip": _uniform(_word(w, _F_AUG, 0)) < a.hflip,
                "rotate_deg": ((2.0 * _uniform(_word(w, _F_AUG, 1)) - 1.0) * a.rotate_deg).to(torch.float32),
                "intensity_scale": (s0 + (s1 - s0) * _uniform(_word(w, _F_AUG, 2))).to(torch.float32),
                "intensity_shift": (o0 + (o1 - o0) * _uniform(_word(w, _F_AUG, 3))).to(torch.float32),
            }
        return out

    # ------------------------------------------------------------------ synthesis
    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and t.device.type == "cpu":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _synth(self, d: dict) -> torch.Tensor:
        B = d["index"].shape[0]
        entry = d["bank_index"]
        whole = d.get("disp_px")
        bank = self.bank
        synth_dtype = torch.float32 if self.augment is not None else self.out_dtype
        if bank.device != self.device:  # CPU bank -> CUDA: gather the batch into pinned memory, copy async
            layers = []
            for t in (bank.soft, bank.upper, bank.lower):
                buf = torch.empty((B, *t.shape[1:]), dtype=t.dtype, pin_memory=True)
                torch.index_select(t, 0, entry, out=buf)
                layers.append(buf.to(self.device, non_blocking=True))
            src_index = torch.arange(B, dtype=torch.int64)
        else:
            layers = [bank.soft, bank.upper, bank.lower]
            src_index = entry
        axis_all = self._axis_cpu[entry]
        groups = self._groups(d)
        out = None
        for mask, bone in groups:
            sel = torch.nonzero(mask).flatten() if len(groups) > 1 else None
            pick = (lambda t: t) if sel is None else (lambda t: t.index_select(0, sel))  # noqa: E731
            params = None if d["params"] is None else self._to_device(pick(d["params"]).contiguous())
            img = render(*layers, self._to_device(pick(src_index)), self._to_device(pick(d["shift_px"])),
                         self._to_device(pick(axis_all)), bone=bone,
                         whole=None if whole is None else self._to_device(pick(whole)), detector=self.detector,
                         params=params, seed=self.seed, sample_index=self._to_device(pick(d["index"])),
                         interp=self.interp, out_dtype=synth_dtype, backend=self.backend)
            if sel is None:
                out = img
            else:
                if out is None:
                    out = torch.empty((B, *img.shape[1:]), dtype=img.dtype, device=img.device)
                out.index_copy_(0, self._to_device(sel), img)
        if self.augment is not None:
            out = self._apply_augment(out, d["augment"]).to(self.out_dtype)
        return out

    def _groups(self, d: dict) -> list[tuple[torch.Tensor, str]]:
        """Split a batch into op calls: one per moving bone and, where per-sample blur widths are
        drawn, per Gaussian radius ``ceil(3σ)``. The reference's taps no longer depend on the
        batch, but the triton backend picks its blur path (fused tile bucket, or the wide multi-pass
        path) and its scatter path from the largest radius in a call: grouping keeps every sample on
        the same code path, and so its pixels bit-identical, whatever batch it is drawn in."""
        key = d["bone"].clone()  # 0 upper, 1 lower, 2 both: bits 0-1 of the key
        p = d["params"]
        if p is not None and ({"blur_sigma_px", "scatter_sigma_px", "scatter"} & set(self.detector_ranges)):
            rb = torch.ceil(3.0 * p[:, PARAM_COLUMNS.index("blur_sigma_px")]).to(torch.int64)
            rs = torch.ceil(3.0 * p[:, PARAM_COLUMNS.index("scatter_sigma_px")]).to(torch.int64)
            rs = torch.where(p[:, PARAM_COLUMNS.index("scatter")] > 0, rs, 0)
            key = key + 4 * (rb * (1 << 20) + rs)
        return [(key == u, MOVED_BONES[u % 4]) for u in torch.unique(key).tolist()]

    def _apply_augment(self, x: torch.Tensor, a: dict) -> torch.Tensor:
        flip = self._to_device(a["hflip"]).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
        if self.augment.rotate_deg > 0:
            x = rotate_about_centre(x, self._to_device(a["rotate_deg"]))
        scale = self._to_device(a["intensity_scale"]).view(-1, 1, 1, 1)
        shift = self._to_device(a["intensity_shift"]).view(-1, 1, 1, 1)
        return x * scale + shift

    def generate(self, index) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Samples at arbitrary global indices: ``(images, jsw_mm, info)``, exactly what the
        stream yields for those indices (any batch, any order)."""
        with torch.no_grad():
            d = self.draws(index)
            images = self._synth(d)
        info = {k: d[k] for k in ("index", "bank_index", "bone", "jsw0_mm", "shift_px", "grade", "disp_px") if k in d}
        if d["params"] is not None:
            info["detector"] = {f: d["params"][:, j] for j, f in enumerate(PARAM_COLUMNS)}
        if "augment" in d:
            info["augment"] = d["augment"]
        return images, self._to_device(d["jsw_mm"]), info

    # ------------------------------------------------------------------ sharding
    def _layout(self) -> tuple[int, int, int, int]:
        wi = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if wi is None else (wi.id, wi.num_workers)
        if self.world_size is not None:
            rank, world = self.rank, self.world_size
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world = 0, 1
        return rank, world, wid, nw

    def shard_range(self, shard: int, num_shards: int) -> tuple[int, int]:
        """Global index range ``[lo, hi)`` of a shard in the current epoch (finite streams)."""
        N = self.num_samples
        if N is None:
            raise ValueError("num_samples: shard ranges exist only for finite streams")
        off = self.epoch * N
        return off + shard * N // num_shards, off + (shard + 1) * N // num_shards

    def _shard_end(self, shard: int, S: int) -> int:
        """Samples the shard hands out in one epoch (finite)."""
        lo, hi = self.shard_range(shard, S)
        n = hi - lo
        return n - n % self.batch_size if self.drop_last else n

    def _plan(self, shard: int, S: int, start: int) -> Iterator[tuple[torch.Tensor, int]]:
        """(global indices, cursor after the batch) for one shard from ``start`` samples in."""
        B = self.batch_size
        if self.num_samples is not None:
            lo, _ = self.shard_range(shard, S)
            end = self._shard_end(shard, S)
            pos = start
            while pos < end:
                n = min(B, end - pos)
                yield torch.arange(lo + pos, lo + pos + n, dtype=torch.int64), pos + n
                pos += n
        else:
            if start % B:
                raise ValueError(f"state_dict: an infinite stream resumes at batch boundaries; got {start} samples with batch_size {B}")
            j = start // B
            while True:
                b0 = (j * S + shard) * B
                yield torch.arange(b0, b0 + B, dtype=torch.int64), (j + 1) * B
                j += 1

    def __iter__(self):
        rank, world, wid, nw = self._layout()
        S, shard = world * nw, rank * nw + wid
        in_worker = torch.utils.data.get_worker_info() is not None
        if in_worker and self.device.type == "cuda":
            raise ValueError("device: CUDA generation inside DataLoader workers is not supported; use num_workers=0 "
                             "(the stream overlaps generation on its own CUDA stream)")
        start_map, start_S = self._start, self._start_shards
        if start_map and start_S is not None and start_S != S:
            raise ValueError(f"state_dict: saved with {start_S} shards (world_size × num_workers) but this iteration has {S}; "
                             "resume with the same layout")
        start = int(start_map.get(shard, 0))
        if not in_worker:  # the main process tracks its own progress; the resume point is used once
            self._progress = dict(start_map)
            self._start, self._start_shards = {}, None
            self._num_shards, self._rank_shards = S, tuple(range(rank * nw, rank * nw + nw))
        meta = {"shard": shard, "num_shards": S, "rank": rank, "world_size": world, "worker": wid, "num_workers": nw,
                "epoch": self.epoch}
        plans = self._plan(shard, S, start)
        gen = self._iter_cuda(plans, meta) if self.device.type == "cuda" else self._iter_sync(plans, meta)
        for batch in gen:
            if not in_worker:
                self._progress[shard] = batch[2]["cursor"]
            yield batch
        if not in_worker and self.num_samples is not None:
            self._progress = {}  # epoch complete: the next iteration starts afresh

    def _make(self, k: torch.Tensor, cursor: int, meta: dict):
        images, jsw, info = self.generate(k)
        info.update(meta)
        info["cursor"] = cursor
        return images, jsw, info

    def _iter_sync(self, plans, meta):
        for k, cursor in plans:
            yield self._make(k, cursor, meta)

    def _iter_cuda(self, plans, meta):  # pragma: no cover - needs a GPU
        """Generate on a side stream ``prefetch`` batches ahead; hand out with event waits."""
        dev = self.device
        producer = torch.cuda.Stream(device=dev)
        pending: deque = deque()

        def handoff(item):
            batch, ev = item
            consumer = torch.cuda.current_stream(dev)
            consumer.wait_event(ev)
            images, jsw, info = batch
            images.record_stream(consumer)
            jsw.record_stream(consumer)
            return batch

        # the producer must not start before work the consumer already queued on inputs it reads
        producer.wait_stream(torch.cuda.current_stream(dev))
        for k, cursor in plans:
            with torch.cuda.stream(producer):
                batch = self._make(k, cursor, meta)
                ev = torch.cuda.Event()
                ev.record(producer)
            pending.append((batch, ev))
            if len(pending) > self.prefetch:
                yield handoff(pending.popleft())
        while pending:
            yield handoff(pending.popleft())

    def __getstate__(self):
        # DataLoader workers started with "spawn"/"forkserver" unpickle a copy in a process where
        # torch.distributed is not initialized: pin the rank / world size of the parent here.
        state = self.__dict__.copy()
        if self.world_size is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            state["rank"], state["world_size"] = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return state

    # ------------------------------------------------------------------ epochs and resume
    def set_epoch(self, epoch: int) -> None:
        """Finite streams: epoch ``e`` covers global indices ``[e·N, (e+1)·N)`` (fresh samples each
        epoch); resets the progress. Call it on every rank, before creating the DataLoader iterator."""
        self.epoch = check_int(epoch, "epoch", 0)
        self._start, self._start_shards, self._progress = {}, None, {}

    def record(self, info: dict) -> None:
        """Record that the batch with this ``info`` was consumed (use with DataLoader workers,
        whose progress the main process cannot see; :meth:`loader` does it for you)."""
        keys = ("shard", "cursor", "num_shards", "num_workers", "rank")
        if not isinstance(info, dict) or any(k not in info for k in keys):
            raise ValueError(f"info: expected the info dict of a batch of this stream (keys {keys}), got "
                             f"{sorted(info) if isinstance(info, dict) else type(info).__name__}")
        shard, cursor = int(info["shard"]), int(info["cursor"])
        self._num_shards = int(info["num_shards"])
        nw, rank = int(info["num_workers"]), int(info["rank"])
        self._rank_shards = tuple(range(rank * nw, rank * nw + nw))
        self._progress[shard] = max(cursor, self._progress.get(shard, 0))

    def state_dict(self) -> dict:
        """Progress of the current (or last, if interrupted) iteration: samples consumed per shard."""
        return {
            "version": 1, "seed": self.seed, "epoch": self.epoch, "num_samples": self.num_samples,
            "batch_size": self.batch_size, "num_shards": self._num_shards,
            "consumed": {int(s): int(c) for s, c in self._progress.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration starts where ``state`` left off (same seed, num_samples,
        world_size × num_workers; the same batch_size for infinite streams)."""
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("state: not a JSWStream state_dict (version 1)")
        if state["seed"] != self.seed:
            raise ValueError(f"state: saved with seed {state['seed']}, this stream has seed {self.seed}")
        if state["num_samples"] != self.num_samples:
            raise ValueError(f"state: saved with num_samples {state['num_samples']}, this stream has {self.num_samples}")
        if self.num_samples is None and state["batch_size"] != self.batch_size:
            raise ValueError(f"state: an infinite stream resumes with the same batch_size ({state['batch_size']}), got {self.batch_size}")
        self.epoch = int(state["epoch"])
        self._start = {int(s): int(c) for s, c in state["consumed"].items()}
        self._start_shards = state.get("num_shards")
        self._progress = dict(self._start)
        self._num_shards = self._start_shards

    def _epoch_done(self) -> bool:
        if self.num_samples is None or self._num_shards is None or self._rank_shards is None:
            return False
        return all(self._progress.get(s, 0) >= self._shard_end(s, self._num_shards) for s in self._rank_shards)

    def loader(self, num_workers: int = 0, **kwargs) -> "_TrackedLoader":
        """A DataLoader over this stream (``batch_size=None``) that records every delivered batch,
        so :meth:`state_dict` is exact with workers too. ``kwargs`` go to ``DataLoader``."""
        return _TrackedLoader(self, num_workers, kwargs)

    def config(self) -> dict:
        """A JSON-able description of the stream (for manifests and logs)."""
        det = None
        if self.detector is not None:
            det = {k: (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in asdict(self.detector).items()}
        return {
            "bank": {"n": self.bank.batch_size, "shape": list(self.bank.shape[1:]), "dtype": str(self.bank.dtype).replace("torch.", ""),
                     "spacing_mm": self.bank.spacing_mm},
            "batch_size": self.batch_size, "seed": self.seed, "num_samples": self.num_samples,
            "jsw_mm": list(self.jsw_range), "jsw_sampler": None if self.jsw_sampler is None else repr(self.jsw_sampler),
            "grade_balanced": self.grade_balanced, "bone": self.bone,
            "bank_index": None if self.bank_index is None else ("callable" if callable(self.bank_index) else self.bank_index.tolist()[:16]),
            "detector": det, "detector_ranges": {k: list(v) for k, v in self.detector_ranges.items()},
            "augment": None if self.augment is None else asdict(self.augment),
            "out_dtype": str(self.out_dtype).replace("torch.", ""), "interp": self.interp, "moves": self.moves,
            "drop_last": self.drop_last,
        }

    def __repr__(self) -> str:
        n = "inf" if self.num_samples is None else self.num_samples
        return f"JSWStream(bank={self.bank.batch_size}×{self.bank.shape[1]}×{self.bank.shape[2]}, batch_size={self.batch_size}, num_samples={n}, seed={self.seed}, device={self.device})"


class _TrackedLoader:
    """``DataLoader(stream, batch_size=None, ...)`` that calls ``stream.record(info)`` per batch."""

    def __init__(self, stream: JSWStream, num_workers: int, kwargs: dict):
        self.stream, self.num_workers, self.kwargs = stream, check_int(num_workers, "num_workers", 0), dict(kwargs)
        if self.kwargs.pop("batch_size", None) is not None:
            raise ValueError("batch_size: the stream batches itself; the DataLoader runs with batch_size=None")

    def __iter__(self):
        st = self.stream
        if self.num_workers == 0:
            yield from st
            return
        dl = torch.utils.data.DataLoader(st, batch_size=None, num_workers=self.num_workers, **self.kwargs)
        st._progress = dict(st._start)
        it = iter(dl)  # workers start here and take their copy of the resume point
        st._start, st._start_shards = {}, None
        for batch in it:
            st.record(batch[2])
            yield batch
        if st._epoch_done():
            st._progress = {}
