"""Shared pieces of the task models: a small CNN encoder, input normalization, a training loop
that takes tensors, iterables or batch functions, and naive augmentation (the control arm)."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validation import check_tensor

_IMG_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_images(images, name: str = "images") -> torch.Tensor:
    check_tensor(images, name, ndim=4, dtypes=_IMG_DTYPES)
    if images.shape[1] != 1:
        raise ValueError(f"{name}: expected (B,1,H,W), got shape {tuple(images.shape)}")
    if images.shape[2] < 16 or images.shape[3] < 16:
        raise ValueError(f"{name}: images must be at least 16x16, got {tuple(images.shape[2:])}")
    return images


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


def iterable_source(it: Iterable) -> BatchFn:
    """Batches from an iterable/iterator yielding tuples (the first k entries are used; the
    batch size is the iterable's). Restarts a re-iterable when it is exhausted."""
    state = {"it": iter(it)}

    def fn(batch: int, g: torch.Generator):
        try:
            b = next(state["it"])
        except StopIteration:
            state["it"] = iter(it)
            b = next(state["it"])
        return tuple(b)

    return fn


def as_source(data) -> BatchFn:
    if callable(data) and not isinstance(data, torch.Tensor):
        return data
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return tensor_source(*data)
    if isinstance(data, Iterable):
        return iterable_source(data)
    raise TypeError("data: expected a tuple of tensors, an iterable of batches or a batch function")


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
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps: must be an int >= 1, got {steps!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size: must be an int >= 1, got {batch_size!r}")
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


def naive_augment(max_rot_deg: float = 8.0, max_shift_px: float = 3.0, intensity: float = 0.1, pair: bool = False):
    """Label-preserving naive augmentation (the control arm): random horizontal flip, rotation
    ±``max_rot_deg``, translation ±``max_shift_px``, intensity scale ×(1 ± ``intensity``).

    No scaling (it would change the JSW in mm). With ``pair=True`` the batch is
    ``(baseline, followup, label)``: both images share the flip; rotation/translation are drawn
    independently (simulating repositioning between visits)."""

    def aug(batch, g):
        if pair:
            a, b, *rest = batch
            flips = torch.rand(a.shape[0], generator=g) < 0.5
            a = _affine(a, g, max_rot_deg, max_shift_px, flips)
            b = _affine(b, g, max_rot_deg, max_shift_px, flips)
            return (a, b, *rest)
        x, *rest = batch
        x = _affine(x, g, max_rot_deg, max_shift_px)
        k = 1 + (torch.rand(x.shape[0], 1, 1, 1, generator=g) * 2 - 1).to(x) * intensity
        return (x * k, *rest)

    return aug
