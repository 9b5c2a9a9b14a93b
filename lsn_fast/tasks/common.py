"""Shared pieces of the task models: a small CNN encoder, input normalization, a training loop
that takes tensors, iterables or batch functions, and naive augmentation (the control arm)."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lsn_fast.utils.validation import check_int, check_positive_float, check_tensor

_IMG_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_images(images, name: str = "images") -> torch.Tensor:
    check_tensor(images, name, ndim=4, dtypes=_IMG_DTYPES)
    if images.shape[1] != 1:
        raise ValueError(f"{name}: expected (B,1,H,W), got shape {tuple(images.shape)}")
    if images.shape[2] < 16 or images.shape[3] < 16:
        raise ValueError(f"{name}: images must be at least 16x16, got {tuple(images.shape[2:])}")
    return images


def check_seed(seed, name: str = "seed") -> int:
    """An int seed that torch's generators accept (-2**63 <= seed < 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"{name}: expected an int, got {seed!r}")
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"{name}: must lie in [-2**63, 2**64), got {seed!r}")
    return int(seed)


def check_model(model, cls: type = nn.Module, name: str = "model"):
    """``model`` is an instance of ``cls`` (default: any ``nn.Module``); ``TypeError`` otherwise."""
    if not isinstance(model, cls):
        what = "nn.Module" if cls is nn.Module else cls.__name__
        art = "an" if what[0] in "AEIOUaeioun" else "a"  # "an nn.Module"
        raise TypeError(f"{name}: expected {art} {what}, got {type(model).__name__}")
    return model


def check_device(device, name: str = "device") -> torch.device:
    """A torch device that exists here: ``"cpu"``, ``"cuda[:N]"`` with CUDA available (no silent
    fallback) or ``"mps"`` where available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: not a torch device: {device!r} ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: CUDA is not available (asked for {device!r})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: {device!r}, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name}: MPS is not available (asked for {device!r})")
    elif dev.type != "cpu":
        raise ValueError(f"{name}: expected 'cpu', 'cuda[:N]' or 'mps', got {device!r}")
    return dev


def check_train_args(*, steps, batch_size, lr, seed, augment, device) -> torch.device | None:
    """The trainers' common arguments; returns ``device`` as a ``torch.device`` (None stays None)."""
    check_int(steps, "steps")
    check_int(batch_size, "batch_size")
    check_positive_float(lr, "lr")
    check_seed(seed)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment: expected a callable (batch, generator) -> batch or None, got {type(augment).__name__}")
    return None if device is None else check_device(device)


def to_tensor(v, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.as_tensor(v, dtype=dtype)`` with a ``TypeError`` naming ``name`` when it fails."""
    if isinstance(v, (str, bytes)) or v is None:
        raise TypeError(f"{name}: expected a number, a sequence or a tensor, got {type(v).__name__}")
    try:
        return torch.as_tensor(v, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: expected a number, a sequence or a tensor ({e})") from None


def check_labels(y, name: str, n: int, *, classes: int | None = None) -> torch.Tensor:
    """Per-sample labels: a real-valued tensor (int or float dtype, not bool) of ``n`` finite
    values. With ``classes``: integer-valued in ``[0, classes)`` (a float tensor of whole numbers
    is accepted). Returns ``y`` unchanged."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name}: dtype {str(y.dtype).replace('torch.', '')} is not supported (use an int or float dtype)")
    if y.numel() != n:
        raise ValueError(f"{name}: expected {n} labels, got {y.numel()} (shape {tuple(y.shape)})")
    if n == 0:
        return y
    with torch.no_grad():
        if y.is_floating_point() and not bool(torch.isfinite(y).all()):
            raise ValueError(f"{name}: contains NaN or Inf")
        if classes is not None:
            flat = y.reshape(-1)
            frac = flat[flat != torch.round(flat)] if y.is_floating_point() else flat[:0]
            if frac.numel():
                raise ValueError(f"{name}: expected whole numbers in 0..{classes - 1}, got non-integer values "
                                 f"(e.g. {float(frac[0]):.4g})")
            lo, hi = float(y.min()), float(y.max())
            if lo < 0 or hi >= classes:
                raise ValueError(f"{name}: values must lie in 0..{classes - 1}, got values in [{lo:g}, {hi:g}]")
    return y


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardization (zero mean, unit std): removes dose/scatter offsets and scale."""
    x = x.float()
    m = x.mean(dim=(2, 3), keepdim=True)
    s = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (x - m) / s


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 4) or 1, c)


class ConvEncoder(nn.Module):
    """``levels`` stages of [conv3x3 stride 2, GN, SiLU, conv3x3, GN, SiLU]; widths double up to
    ``8·width``. Output: (B, C, H/2^levels, W/2^levels)."""

    def __init__(self, in_ch: int = 1, width: int = 16, levels: int = 4):
        super().__init__()
        layers, c = [], in_ch
        for i in range(levels):
            co = width * min(2**i, 8)
            layers += [nn.Conv2d(c, co, 3, stride=2, padding=1), _gn(co), nn.SiLU(),
                       nn.Conv2d(co, co, 3, padding=1), _gn(co), nn.SiLU()]
            c = co
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x):
        return self.net(x)


def pool_features(h: torch.Tensor) -> torch.Tensor:
    """Global average and max pooling concatenated: (B, 2C)."""
    return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------- batch sources
BatchFn = Callable[[int, torch.Generator], tuple]


def tensor_source(*tensors: torch.Tensor) -> BatchFn:
    """Random minibatches (with replacement across steps, without within a batch when possible)."""
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError("tensors: first dimensions differ")
    if n == 0:
        raise ValueError("tensors: empty training set")

    def fn(batch: int, g: torch.Generator):
        idx = torch.randperm(n, generator=g)[:batch] if batch <= n else torch.randint(0, n, (batch,), generator=g)
        return tuple(t[idx] for t in tensors)

    return fn


def iterable_source(it: Iterable, name: str = "data") -> BatchFn:
    """Batches from an iterable/iterator yielding tuples (the first k entries are used; the
    batch size is the iterable's). Restarts a re-iterable when it is exhausted; an iterable that
    yields nothing, a one-shot iterator that runs out, or a batch that is not a tuple/list is a
    ``ValueError``/``TypeError`` naming ``name``."""
    state = {"it": iter(it), "n": 0}

    def fn(batch: int, g: torch.Generator):
        try:
            b = next(state["it"])
        except StopIteration:
            state["it"] = iter(it)
            try:
                b = next(state["it"])
            except StopIteration:
                if state["n"] == 0:
                    raise ValueError(f"{name}: the iterable yielded no batches") from None
                raise ValueError(f"{name}: the iterator ran out after {state['n']} batches (pass a re-iterable, "
                                 "e.g. a list, or fewer steps)") from None
        if not isinstance(b, (tuple, list)):
            raise TypeError(f"{name}: each batch must be a tuple (images, labels, ...), got {type(b).__name__}")
        state["n"] += 1
        return tuple(b)

    return fn


def as_source(data, name: str = "data") -> BatchFn:
    if callable(data) and not isinstance(data, torch.Tensor):
        return data
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return tensor_source(*data)
    if isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, bytes)):
        return iterable_source(data, name)
    raise TypeError(f"{name}: expected a tuple of tensors, an iterable of batches or a batch function, "
                    f"got {type(data).__name__}")


# a batch spec: (label, kind) per leading batch entry; kind "images" ((B,1,H,W), all images of one
# batch of the same shape), "values" (B finite labels) or an int K (B whole-number labels in 0..K-1)
BatchSpec = Sequence[tuple]


def check_batch(batch, spec: BatchSpec, name: str) -> None:
    """Check one batch ``(entry_0, entry_1, ...)`` against ``spec``; errors start with ``name``."""
    if not isinstance(batch, (tuple, list)):
        raise TypeError(f"{name}: a batch must be a tuple ({', '.join(lab for lab, _ in spec)}, ...), "
                        f"got {type(batch).__name__}")
    if len(batch) < len(spec):
        raise ValueError(f"{name}: a batch must hold at least {len(spec)} entries "
                         f"({', '.join(lab for lab, _ in spec)}), got {len(batch)}")
    first = None
    for i, (lab, kind) in enumerate(spec):
        t, where = batch[i], f"{name}: batch entry {i} ({lab})"
        if kind == "images":
            check_images(t, where)
            if first is None:
                first = t
            elif t.shape != first.shape:
                raise ValueError(f"{where}: shape {tuple(t.shape)} differs from entry 0's {tuple(first.shape)}")
        else:
            check_labels(t, where, first.shape[0], classes=None if kind == "values" else int(kind))


def checked_source(source, spec: BatchSpec, name: str = "source") -> BatchFn:
    """:func:`as_source` with validation against ``spec`` (see :func:`check_batch`).

    A tuple/list of tensors is checked whole, once (every entry's first dimension must agree);
    of an iterable or a batch function, the first batch drawn is checked (no extra draw, so
    training sees exactly the batches it would see unchecked; later batches are not, so that a
    stream on a GPU is not synchronized every step)."""
    if isinstance(source, (tuple, list)):
        if not source:
            raise ValueError(f"{name}: empty (expected a tuple of tensors or batches)")
        is_t = [isinstance(t, torch.Tensor) for t in source]
        if any(is_t) and not all(is_t):
            raise TypeError(f"{name}: a tuple of tensors must hold only tensors, entry {is_t.index(False)} is "
                            f"{type(source[is_t.index(False)]).__name__}")
        if all(is_t):
            check_batch(tuple(source), spec, name)
            n = source[0].shape[0]
            for i, t in enumerate(source):
                if t.ndim == 0 or t.shape[0] != n:
                    raise ValueError(f"{name}: entry {i} has shape {tuple(t.shape)}; every entry needs first dimension {n}")
            return tensor_source(*source)
    inner = as_source(source, name)
    state = {"checked": False}

    def fn(batch: int, g: torch.Generator):
        b = inner(batch, g)
        if not state["checked"]:
            check_batch(b, spec, name)
            state["checked"] = True
        return b

    return fn


def mixed_source(a: BatchFn, b: BatchFn, frac_b: float) -> BatchFn:
    """Each batch: ``round(frac_b·batch)`` samples from ``b``, the rest from ``a`` (concatenated)."""

    def fn(batch: int, g: torch.Generator):
        nb = int(round(frac_b * batch))
        na = batch - nb
        parts = []
        if na:
            parts.append(a(na, g))
        if nb:
            parts.append(b(nb, g))
        return tuple(torch.cat([p[i].to(parts[0][i].device) for p in parts]) for i in range(len(parts[0])))

    return fn


# ----------------------------------------------------------------------------- training loop
def fit(model: nn.Module, source: BatchFn, loss_fn: Callable, *, steps: int, batch_size: int, lr: float = 2e-3,
        weight_decay: float = 1e-4, seed: int = 0, augment: Callable | None = None, progress: bool = False,
        desc: str = "train") -> list[float]:
    """AdamW with a short warm-up and cosine decay; ``loss_fn(model, batch) -> scalar``.

    Returns the loss history (one float per step)."""
    check_int(steps, "steps")
    check_int(batch_size, "batch_size")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment: expected a callable (batch, generator) -> batch or None, got {type(augment).__name__}")
    g = torch.Generator().manual_seed(int(seed))
    dev = model_device(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    hist = []
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=desc, leave=False)
        except ImportError:  # pragma: no cover
            bar = None
    for _ in range(steps):
        batch = source(batch_size, g)
        batch = tuple(t.to(dev) if isinstance(t, torch.Tensor) else t for t in batch)
        if augment is not None:
            batch = augment(batch, g)
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        hist.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return hist


@torch.no_grad()
def batched_apply(fn: Callable, *tensors: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    check_int(batch_size, "batch_size")
    outs = []
    for s in range(0, tensors[0].shape[0], batch_size):
        outs.append(fn(*(t[s:s + batch_size] for t in tensors)))
    return torch.cat(outs)


# ----------------------------------------------------------------------------- naive augmentation
def _affine(images: torch.Tensor, g: torch.Generator, max_rot_deg: float, max_shift_px: float, flips: torch.Tensor | None = None):
    B, _, H, W = images.shape
    rot = (torch.rand(B, generator=g) * 2 - 1) * math.radians(max_rot_deg)
    ty = (torch.rand(B, generator=g) * 2 - 1) * max_shift_px * 2 / H
    tx = (torch.rand(B, generator=g) * 2 - 1) * max_shift_px * 2 / W
    if flips is None:
        flips = torch.rand(B, generator=g) < 0.5
    sx = torch.where(flips, -1.0, 1.0)
    c, s = torch.cos(rot), torch.sin(rot)
    theta = torch.stack([torch.stack([c * sx, -s, tx], -1), torch.stack([s * sx, c, ty], -1)], 1).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(images.dtype)


def naive_augment(max_rot_deg: float = 8.0, max_shift_px: float = 3.0, intensity: float = 0.1, pair: bool = False,
                  dense: bool = False):
    """Label-preserving naive augmentation (the control arm): random horizontal flip, rotation
    ±``max_rot_deg``, translation ±``max_shift_px``, intensity scale ×(1 ± ``intensity``).

    No scaling (it would change the JSW in mm). With ``pair=True`` the batch is
    ``(baseline, followup, label)``: both images share the flip; rotation/translation are drawn
    independently (simulating repositioning between visits). With ``dense=True`` the batch is
    ``(images, label, maps (B,C,H,W), ...)``: the maps (e.g. bone layers, same intensity units)
    get the image's warp and intensity scale; the random draws are those of ``dense=False``."""
    if pair and dense:
        raise ValueError("pair, dense: pick one (pairs carry no dense maps)")

    def aug(batch, g):
        if pair:
            a, b, *rest = batch
            flips = torch.rand(a.shape[0], generator=g) < 0.5
            a = _affine(a, g, max_rot_deg, max_shift_px, flips)
            b = _affine(b, g, max_rot_deg, max_shift_px, flips)
            return (a, b, *rest)
        if dense:
            x, y, maps, *rest = batch
            both = _affine(torch.cat([x.float(), maps.float()], 1), g, max_rot_deg, max_shift_px)
            x, maps = both[:, :x.shape[1]].to(x.dtype), both[:, x.shape[1]:].to(maps.dtype)
            k = 1 + (torch.rand(x.shape[0], 1, 1, 1, generator=g) * 2 - 1).to(x) * intensity
            return (x * k, y, maps * k.to(maps), *rest)
        x, *rest = batch
        x = _affine(x, g, max_rot_deg, max_shift_px)
        k = 1 + (torch.rand(x.shape[0], 1, 1, 1, generator=g) * 2 - 1).to(x) * intensity
        return (x * k, *rest)

    return aug
