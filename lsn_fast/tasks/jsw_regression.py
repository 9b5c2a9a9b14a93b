"""Task 1: JSW measurement from the image — a small CNN regressor, its trainer and metrics.

``JSWRegressor``: (B,1,H,W) attenuation image -> (B,) JSW in mm. Per-image standardization, a
4-level strided conv encoder (GroupNorm/SiLU), global average+max pooling, an MLP head. The
output is ``offset + scale·head`` with offset/scale set from the training labels' mean/std so the
untrained model starts at the label mean.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._common import (ConvEncoder, as_source, batched_apply, check_images, check_int, check_labels, check_model,
                      check_train_args, checked_source, fit, model_device, normalize_images, pool_features, to_tensor)
from .metrics import regression_metrics

__all__ = ["JSWRegressor", "train_jsw_regressor", "predict_jsw", "evaluate_jsw"]


class JSWRegressor(nn.Module):
    """Image -> JSW (mm). ``width`` sets the encoder's first-stage channels (16: ~0.2M params)."""

    def __init__(self, width: int = 16, levels: int = 4):
        super().__init__()
        self.encoder = ConvEncoder(1, width, levels)
        c = 2 * self.encoder.out_channels
        self.head = nn.Sequential(nn.Linear(c, 64), nn.SiLU(), nn.Linear(64, 1))
        self.register_buffer("offset", torch.tensor(1.5))
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.encoder(normalize_images(images))
        return self.offset + self.scale * self.head(pool_features(h)).squeeze(1)

    def set_label_stats(self, jsw: torch.Tensor) -> None:
        jsw = jsw.float()
        self.offset.fill_(float(jsw.mean()))
        self.scale.fill_(max(float(jsw.std()) if jsw.numel() > 1 else 1.0, 0.1))


def _loss(model, batch):
    x, y = batch[0], batch[1]
    return F.smooth_l1_loss(model(x), y.to(x.device, torch.float32).reshape(-1), beta=0.1)


def train_jsw_regressor(images=None, jsw=None, *, source=None, model: JSWRegressor | None = None, steps: int = 300,
                        batch_size: int = 32, lr: float = 2e-3, seed: int = 0, augment=None, device=None,
                        progress: bool = False) -> JSWRegressor:
    """Train (or fine-tune) a :class:`JSWRegressor`.

    Data: ``images`` (N,1,H,W) with ``jsw`` (N,) mm, or ``source``: an iterable yielding
    ``(images, jsw, ...)`` batches (e.g. :class:`lsn_fast.JSWStream`) or a batch function
    ``fn(batch_size, generator) -> (images, jsw)``.
    A new model takes its output offset/scale from ``jsw`` (when given); a passed ``model`` (a
    :class:`JSWRegressor`) is fine-tuned as is. Returns the model in eval mode.

    Checked before anything reaches the model: labels finite, one per image; a ``source``'s
    batches (a tuple of tensors whole; of an iterable or a batch function, the first batch
    drawn) must be ``(images (B,1,H,W) finite, jsw (B,) finite, ...)``; ``steps``,
    ``batch_size`` ints >= 1, ``lr`` > 0, ``augment`` None or callable, ``device`` an available
    torch device (``"cuda"`` without a GPU is an error).
    """
    device = check_train_args(steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=augment, device=device)
    if model is not None:
        check_model(model, JSWRegressor)
    if source is None:
        if images is None or jsw is None:
            raise ValueError("images, jsw: give both, or a source")
        check_images(images)
        jsw = to_tensor(jsw, "jsw", torch.float32).reshape(-1)
        if jsw.shape[0] != images.shape[0]:
            raise ValueError(f"jsw: expected {images.shape[0]} labels, got {jsw.shape[0]}")
        if not bool(torch.isfinite(jsw).all()):
            raise ValueError("jsw: contains NaN or Inf")
        source = as_source((images, jsw))
    else:
        source = checked_source(source, (("images", "images"), ("jsw", "values")))
    torch.manual_seed(seed)
    new = model is None
    if new:
        model = JSWRegressor()
        if jsw is not None:
            model.set_label_stats(jsw)
    if device is not None:
        model = model.to(device)
    fit(model, source, _loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=augment,
        progress=progress, desc="jsw")
    return model


def predict_jsw(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """(B,) mm, on the CPU. ``model``: an ``nn.Module`` giving one value per image (a trained
    :class:`JSWRegressor`); ``images`` (B,1,H,W) finite; ``batch_size``: an int >= 1."""
    check_model(model)
    check_images(images)
    check_int(batch_size, "batch_size")
    dev = model_device(model)
    model.eval()

    def run(x):
        y = model(x.to(dev))
        if not isinstance(y, torch.Tensor) or y.numel() != x.shape[0]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"model: expected one JSW per image, shape ({x.shape[0]},), got {got}")
        return y.float().cpu()

    return batched_apply(run, images, batch_size=batch_size)


def evaluate_jsw(model: nn.Module, images: torch.Tensor, jsw) -> dict:
    """MAE, RMSE, bias, Pearson r, ICC(2,1) of the model's predictions (mm); ``jsw``: (B,) finite."""
    check_model(model)
    check_images(images)
    check_labels(to_tensor(jsw, "jsw"), "jsw", images.shape[0])
    pred = predict_jsw(model, images)
    return regression_metrics(pred, jsw)
