"""Task 1: JSW measurement from the image — a small CNN regressor, its trainer and metrics.

``JSWRegressor``: (B,1,H,W) attenuation image -> (B,) JSW in mm. Per-image standardization, a
4-level strided conv encoder (GroupNorm/SiLU), global average+max pooling, an MLP head. The
output is ``offset + scale·head`` with offset/scale set from the training labels' mean/std so the
untrained model starts at the label mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lsn_fast.tasks.common import (ConvEncoder, as_source, batched_apply, check_images, check_int, check_labels, check_model,
                      check_train_args, checked_source, fit, model_device, normalize_images, pool_features, to_tensor)
from lsn_fast.tasks.metrics import regression_metrics

__all__ = ["JSWRegressor", "train_jsw_regressor", "predict_jsw", "evaluate_jsw", "layer_targets", "without_layers"]


class JSWRegressor(nn.Module):
    """Image -> JSW (mm). ``width`` sets the encoder's first-stage channels (16: ~0.2M params).

    :meth:`attach_layer_head` adds an auxiliary head for layer supervision during training (it
    reads the encoder after ``levels - 1`` stages and predicts the upper and lower bone layers
    there, block-averaged); the JSW prediction never uses it."""

    def __init__(self, width: int = 16, levels: int = 4):
        super().__init__()
        self.encoder = ConvEncoder(1, width, levels)
        c = 2 * self.encoder.out_channels
        self.head = nn.Sequential(nn.Linear(c, 64), nn.SiLU(), nn.Linear(64, 1))
        self.register_buffer("offset", torch.tensor(1.5))
        self.register_buffer("scale", torch.tensor(1.0))
        self.layer_head = None
        self._levels, self._width = levels, width

    def attach_layer_head(self) -> None:
        """Add the auxiliary bone-layer head (no-op if present). Called after the model is built,
        so a model without it is initialized exactly as before."""
        if self.layer_head is None:
            c = self._width * min(2 ** (self._levels - 2), 8)
            self.layer_head = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 2, 1)).to(
                self.offset.device)

    def forward(self, images: torch.Tensor, return_layers: bool = False):
        """``images`` (B,1,H,W) -> JSW (B,) mm; with ``return_layers`` also the layer head's
        (B,2,H/2^(levels-1),W/2^(levels-1)) prediction of the bone layers (upper, lower) divided by
        each image's standard deviation and block-averaged (see :func:`layer_targets`)."""
        x = normalize_images(images)
        if not return_layers:
            h = self.encoder(x)
            return self.offset + self.scale * self.head(pool_features(h)).squeeze(1)
        if self.layer_head is None:
            raise RuntimeError("return_layers: this model has no layer head (call attach_layer_head())")
        k = 6 * (self._levels - 1)  # ConvEncoder: 6 modules per stage
        mid = self.encoder.net[:k](x)
        h = self.encoder.net[k:](mid)
        return self.offset + self.scale * self.head(pool_features(h)).squeeze(1), self.layer_head(mid)

    def set_label_stats(self, jsw: torch.Tensor) -> None:
        jsw = jsw.float()
        self.offset.fill_(float(jsw.mean()))
        self.scale.fill_(max(float(jsw.std()) if jsw.numel() > 1 else 1.0, 0.1))


def _jsw_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(pred, y.to(pred.device, torch.float32).reshape(-1), beta=0.1)


def _loss(model, batch):
    return _jsw_loss(model(batch[0]), batch[1])


def layer_targets(images: torch.Tensor, bones: torch.Tensor, size) -> torch.Tensor:
    """What the layer head predicts: ``bones`` (B,2,H,W) attenuation over each image's standard
    deviation (the scale :func:`normalize_images` divides by), block-averaged to ``size`` (h, w).
    Block averages keep a sub-block edge position as a fraction, so a coarse map still carries it."""
    s = images.float().std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return F.adaptive_avg_pool2d(bones.float() / s, size)


def _layer_loss(weight: float):
    """JSW loss + ``weight`` × MSE of the layer head on the rows that carry layers."""

    def loss(model, batch):
        x, y, bones, has = batch[0], batch[1], batch[2], batch[3].to(torch.bool)
        pred, lay = model(x, return_layers=True)
        main = _jsw_loss(pred, y)
        if not bool(has.any()):
            return main + 0.0 * lay.sum()  # keep the head in the graph
        tgt = layer_targets(x[has], bones[has], lay.shape[-2:])
        return main + weight * F.mse_loss(lay[has], tgt)

    return loss


def train_jsw_regressor(images=None, jsw=None, *, source=None, model: JSWRegressor | None = None, steps: int = 300,
                        batch_size: int = 32, lr: float = 2e-3, seed: int = 0, augment=None, device=None,
                        progress: bool = False, layer_weight: float = 0.0) -> JSWRegressor:
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

    ``layer_weight`` > 0 switches on layer supervision (for synthesized data, whose layers are
    known): every batch is ``(images, jsw, bones (B,2,H,W), has_bones (B,) bool)`` (e.g.
    :meth:`lsn_fast.tasks.experiment.Synthesizer.jsw_layer_batch`; rows without layers, such as
    real images, carry ``has_bones=False``), the model gets :meth:`JSWRegressor.attach_layer_head`,
    and the loss adds ``layer_weight`` × the head's MSE against :func:`layer_targets`. An
    ``augment`` must then move ``bones`` with the image (``naive_augment(dense=True)``).
    """
    device = check_train_args(steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=augment, device=device)
    if isinstance(layer_weight, bool) or not isinstance(layer_weight, (int, float)) or not (
            math.isfinite(layer_weight) and layer_weight >= 0):
        raise ValueError(f"layer_weight: expected a finite number >= 0, got {layer_weight!r}")
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
    if layer_weight > 0:
        source = _checked_layer_source(source)
    torch.manual_seed(seed)
    new = model is None
    if new:
        model = JSWRegressor()
        if jsw is not None:
            model.set_label_stats(jsw)
    if device is not None:
        model = model.to(device)
    if layer_weight > 0:
        model.attach_layer_head()
    fit(model, source, _layer_loss(float(layer_weight)) if layer_weight > 0 else _loss, steps=steps,
        batch_size=batch_size, lr=lr, seed=seed, augment=augment, progress=progress, desc="jsw")
    return model


def _checked_layer_source(source):
    """Checks the first batch's layer entries: ``bones`` (B,2,H,W) finite beside images
    (B,1,H,W), ``has_bones`` (B,) bool."""
    state = {"checked": False}

    def fn(batch: int, g: torch.Generator):
        b = source(batch, g)
        if not state["checked"]:
            if len(b) < 4:
                raise ValueError("source: with layer_weight > 0 a batch must be (images, jsw, bones, has_bones), "
                                 f"got {len(b)} entries")
            x, bones, has = b[0], b[2], b[3]
            if not (isinstance(bones, torch.Tensor) and bones.shape == (x.shape[0], 2, *x.shape[2:])):
                got = tuple(bones.shape) if isinstance(bones, torch.Tensor) else type(bones).__name__
                raise ValueError(f"source: batch entry 2 (bones): expected shape {(x.shape[0], 2, *x.shape[2:])}, got {got}")
            if not bool(torch.isfinite(bones).all()):
                raise ValueError("source: batch entry 2 (bones): contains NaN or Inf")
            if not (isinstance(has, torch.Tensor) and has.dtype == torch.bool and has.shape == (x.shape[0],)):
                raise ValueError(f"source: batch entry 3 (has_bones): expected a bool tensor of shape ({x.shape[0]},)")
            state["checked"] = True
        return b

    return fn


def without_layers(source):
    """A batch function of ``(images, jsw, ...)`` made to fit layer supervision: each batch
    becomes ``(images, jsw, zeros (B,2,H,W), has_bones False)`` (real images: no layers)."""

    def fn(batch: int, g: torch.Generator):
        b = source(batch, g)
        x = b[0]
        return (x, b[1], x.new_zeros(x.shape[0], 2, *x.shape[2:]), torch.zeros(x.shape[0], dtype=torch.bool))

    return fn


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
