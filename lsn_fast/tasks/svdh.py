"""Task 3: an SvdH-like joint-space-narrowing score, grade 0–4, from relative JSW loss.

Grading rule (:func:`svdh_grade`): relative loss ``ℓ = 1 − JSW / JSW_ref`` against a reference
healthy JSW (the joint's own baseline when known, else a population normal per joint type);
a JSW at or above the reference is loss 0.

=====  ======================  ==============================================
grade  relative loss ℓ         meaning (van der Heijde JSN, adapted)
=====  ======================  ==============================================
0      ℓ < 10 %                normal
1      10 % ≤ ℓ < 33 %         focal / mild narrowing
2      33 % ≤ ℓ < 66 %         generalized narrowing, less than two thirds lost
3      66 % ≤ ℓ < 90 %         severe narrowing
4      ℓ ≥ 90 %                complete loss / ankylosis (JSW ≤ 0.1·ref, ~1–2 px at 0.1 mm)
=====  ======================  ==============================================

The last threshold is 90 % rather than 99 %: a residual gap below ~0.1–0.2 mm is under two
pixels of a hand radiograph and cannot be told from bone contact.

Population normals (``REFERENCE_JSW_MM``; DESIGN.md §2: healthy PIP ≈ 0.8–1.5 mm, MCP ≈
1.5–2.0 mm): PIP 1.15 mm, MCP 1.75 mm (range midpoints); ``"phantom"`` 2.0 mm is the healthy
reference used for the phantoms of :mod:`lsn_fast.phantom` (JSW drawn in 0–3 mm) by the
five-percent experiment.

``SvdHClassifier``: image -> 5 logits (conv encoder + pooling + MLP), trained with
cross-entropy by :func:`train_svdh_classifier`; :func:`evaluate_svdh` gives accuracy,
quadratic-weighted kappa and the confusion matrix.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lsn_fast.tasks.common import (ConvEncoder, as_source, batched_apply, check_images, check_int, check_labels, check_model,
                      check_train_args, checked_source, fit, model_device, normalize_images, pool_features, to_tensor)
from lsn_fast.tasks.metrics import classification_metrics

__all__ = ["SVDH_THRESHOLDS", "REFERENCE_JSW_MM", "NUM_GRADES", "svdh_grade", "SvdHClassifier", "train_svdh_classifier",
           "predict_svdh", "evaluate_svdh"]

SVDH_THRESHOLDS = (0.10, 0.33, 0.66, 0.90)
REFERENCE_JSW_MM = {"pip": 1.15, "mcp": 1.75, "phantom": 2.0}
NUM_GRADES = 5


def svdh_grade(jsw_mm, reference_jsw_mm="phantom", thresholds=SVDH_THRESHOLDS) -> torch.Tensor:
    """Grade(s) 0–4 (int64, shape of ``jsw_mm`` flattened to (B,)) from relative JSW loss.

    Args:
        jsw_mm: JSW, float or (B,) mm, >= 0.
        reference_jsw_mm: healthy reference: a joint type in ``REFERENCE_JSW_MM``, a float or a
            (B,) tensor (e.g. each joint's own baseline JSW), mm > 0.
        thresholds: 4 finite, strictly increasing relative-loss thresholds (a sequence or a
            1-D tensor).
    """
    j = to_tensor(jsw_mm, "jsw_mm", torch.float64).reshape(-1)
    if not bool(torch.isfinite(j).all()):
        raise ValueError("jsw_mm: contains NaN or Inf")
    if bool((j < 0).any()):
        raise ValueError("jsw_mm: must be >= 0")
    if isinstance(reference_jsw_mm, str):
        if reference_jsw_mm not in REFERENCE_JSW_MM:
            raise ValueError(f"reference_jsw_mm: unknown joint type {reference_jsw_mm!r}; expected one of {sorted(REFERENCE_JSW_MM)} or mm")
        ref = torch.tensor(REFERENCE_JSW_MM[reference_jsw_mm], dtype=torch.float64)
    else:
        ref = to_tensor(reference_jsw_mm, "reference_jsw_mm", torch.float64).reshape(-1)
        if ref.numel() not in (1, j.numel()):
            raise ValueError(f"reference_jsw_mm: expected a scalar or {j.numel()} values, got {ref.numel()}")
        if not bool(torch.isfinite(ref).all()) or bool((ref <= 0).any()):
            raise ValueError("reference_jsw_mm: must be finite and > 0")
    th = to_tensor(thresholds, "thresholds", torch.float64)
    if th.ndim != 1 or th.numel() != NUM_GRADES - 1:
        raise ValueError(f"thresholds: expected {NUM_GRADES - 1} values in a 1-D sequence, got shape {tuple(th.shape)}")
    if not bool(torch.isfinite(th).all()):
        raise ValueError(f"thresholds: contains NaN or Inf: {th.tolist()}")
    if bool((th[1:] <= th[:-1]).any()):
        raise ValueError(f"thresholds: expected {NUM_GRADES - 1} increasing values, got {th.tolist()}")
    loss = (1.0 - j / ref).clamp_min(0.0)
    return torch.bucketize(loss, th, right=True).to(torch.int64)


class SvdHClassifier(nn.Module):
    """Image (B,1,H,W) -> logits (B,5)."""

    def __init__(self, width: int = 16, levels: int = 4, num_classes: int = NUM_GRADES):
        super().__init__()
        self.encoder = ConvEncoder(1, width, levels)
        self.head = nn.Sequential(nn.Linear(2 * self.encoder.out_channels, 64), nn.SiLU(), nn.Linear(64, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pool_features(self.encoder(normalize_images(images))))


def _loss(model, batch):
    x, y = batch[0], batch[1]
    return F.cross_entropy(model(x), y.to(x.device, torch.int64).reshape(-1), label_smoothing=0.05)


def train_svdh_classifier(images=None, grades=None, *, source=None, model: SvdHClassifier | None = None, steps: int = 300,
                          batch_size: int = 32, lr: float = 2e-3, seed: int = 0, augment=None, device=None,
                          progress: bool = False) -> SvdHClassifier:
    """Train (or fine-tune) a :class:`SvdHClassifier` on ``images`` (N,1,H,W) and ``grades`` (N,)
    int in 0–4, or on ``source`` (a tuple of tensors, an iterable of ``(images, grades)`` batches
    or a batch function).

    Grades must be whole numbers in 0–4 (an int tensor, or a float tensor of whole numbers; a
    fraction such as 1.5 is an error, not truncated), also in a ``source``'s batches (the first
    batch drawn); a passed ``model`` must be an :class:`SvdHClassifier` with 5 outputs."""
    device = check_train_args(steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=augment, device=device)
    if model is not None:
        check_model(model, SvdHClassifier)
        out = model.head[-1].out_features
        if out != NUM_GRADES:
            raise ValueError(f"model: an SvdHClassifier with {out} classes; grades 0–4 need {NUM_GRADES}")
    if source is None:
        if images is None or grades is None:
            raise ValueError("images, grades: give both, or a source")
        check_images(images)
        grades = to_tensor(grades, "grades").reshape(-1)
        if grades.shape[0] != images.shape[0]:
            raise ValueError(f"grades: expected {images.shape[0]} labels, got {grades.shape[0]}")
        check_labels(grades, "grades", images.shape[0], classes=NUM_GRADES)
        grades = grades.to(torch.int64)
        source = as_source((images, grades))
    else:
        source = checked_source(source, (("images", "images"), ("grades", NUM_GRADES)))
    torch.manual_seed(seed)
    model = model if model is not None else SvdHClassifier()
    if device is not None:
        model = model.to(device)
    fit(model, source, _loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=augment,
        progress=progress, desc="svdh")
    return model


def predict_svdh(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """(B,) int64 grades, on the CPU. ``model``: an ``nn.Module`` giving (b, classes) logits (a
    trained :class:`SvdHClassifier`); ``images`` (B,1,H,W) finite; ``batch_size``: an int >= 1."""
    check_model(model)
    check_images(images)
    check_int(batch_size, "batch_size")
    dev = model_device(model)
    model.eval()

    def run(x):
        y = model(x.to(dev))
        if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"model: expected logits of shape ({x.shape[0]}, classes), got {got}")
        return y.argmax(dim=1).cpu()

    return batched_apply(run, images, batch_size=batch_size)


def evaluate_svdh(model: nn.Module, images: torch.Tensor, grades) -> dict:
    """Accuracy, quadratic-weighted kappa and confusion matrix of the classifier's grades;
    ``grades``: (B,) whole numbers in 0–4."""
    check_model(model)
    check_images(images)
    check_labels(to_tensor(grades, "grades"), "grades", images.shape[0], classes=NUM_GRADES)
    return classification_metrics(grades, predict_svdh(model, images), NUM_GRADES)
