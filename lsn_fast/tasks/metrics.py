"""Metrics for the downstream tasks, in plain torch (no scipy / sklearn).

Regression (JSW in mm, JSN in mm):

* :func:`mae`, :func:`rmse`, :func:`bias` (mean of ``pred − true``);
* :func:`pearson_r`: Pearson correlation coefficient;
* :func:`icc`: intraclass correlation between prediction and truth treated as two "raters" of
  the same n subjects (Shrout & Fleiss 1979; McGraw & Wong 1996). Default ``kind="2,1"``:
  **ICC(2,1)**, two-way random effects, *absolute agreement*, single measurement::

      ICC(2,1) = (MSR − MSE) / (MSR + (k−1)·MSE + k·(MSC − MSE)/n)

  ``kind="3,1"``: ICC(3,1), two-way mixed, *consistency* (ignores a constant offset)::

      ICC(3,1) = (MSR − MSE) / (MSR + (k−1)·MSE)

  with k = 2 raters, MSR the between-subjects mean square, MSC the between-raters mean square
  and MSE the residual mean square of the two-way ANOVA without replication.

Classification (SvdH JSN grades 0–4):

* :func:`confusion_matrix` (rows = true grade, columns = predicted grade);
* :func:`accuracy`;
* :func:`quadratic_weighted_kappa`: Cohen's kappa with weights ``(i−j)²/(K−1)²``,
  ``κ = 1 − Σ w·O / Σ w·E`` where O is the confusion matrix and E the outer product of the
  marginals divided by n.

All functions accept tensors, numpy arrays or sequences and compute in float64; they return
python floats (or a long tensor for the confusion matrix). Inputs with NaN are rejected.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "mae", "rmse", "bias", "pearson_r", "icc", "regression_metrics",
    "confusion_matrix", "accuracy", "quadratic_weighted_kappa", "classification_metrics",
]


def _vec(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64).reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name}: empty")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or Inf")
    return t


def _pair(pred, true) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _vec(pred, "pred"), _vec(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred, true: different lengths {p.numel()} and {t.numel()}")
    return p, t


def mae(pred, true) -> float:
    """Mean absolute error."""
    p, t = _pair(pred, true)
    return float((p - t).abs().mean())


def rmse(pred, true) -> float:
    """Root mean squared error."""
    p, t = _pair(pred, true)
    return float((p - t).pow(2).mean().sqrt())


def bias(pred, true) -> float:
    """Mean signed error ``mean(pred − true)`` (Bland–Altman bias)."""
    p, t = _pair(pred, true)
    return float((p - t).mean())


def pearson_r(pred, true) -> float:
    """Pearson correlation; NaN if either input is constant (or n < 2)."""
    p, t = _pair(pred, true)
    if p.numel() < 2:
        return float("nan")
    pc, tc = p - p.mean(), t - t.mean()
    den = math.sqrt(float((pc * pc).sum()) * float((tc * tc).sum()))
    return float((pc * tc).sum()) / den if den > 0 else float("nan")


def icc(pred, true, kind: str = "2,1") -> float:
    """Intraclass correlation of (pred, true) as two raters; ``kind`` ``"2,1"`` or ``"3,1"``.

    See the module docstring for the formulas. NaN for n < 2 or a zero denominator.
    """
    if kind not in ("2,1", "3,1"):
        raise ValueError(f"kind: expected '2,1' or '3,1', got {kind!r}")
    p, t = _pair(pred, true)
    n, k = p.numel(), 2
    if n < 2:
        return float("nan")
    Y = torch.stack([p, t], dim=1)  # (n, k)
    m = Y.mean()
    row, col = Y.mean(dim=1), Y.mean(dim=0)
    msr = k * float(((row - m) ** 2).sum()) / (n - 1)
    msc = n * float(((col - m) ** 2).sum()) / (k - 1)
    sse = float(((Y - row[:, None] - col[None, :] + m) ** 2).sum())
    mse = sse / ((n - 1) * (k - 1))
    if kind == "2,1":
        den = msr + (k - 1) * mse + k * (msc - mse) / n
    else:
        den = msr + (k - 1) * mse
    return (msr - mse) / den if den != 0 else float("nan")


def regression_metrics(pred, true) -> dict[str, float]:
    """``{"mae", "rmse", "bias", "r", "icc"}`` (icc = ICC(2,1), absolute agreement)."""
    return {"mae": mae(pred, true), "rmse": rmse(pred, true), "bias": bias(pred, true),
            "r": pearson_r(pred, true), "icc": icc(pred, true, "2,1")}


def _labels(x, name: str, num_classes: int) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu").reshape(-1)
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise ValueError(f"{name}: expected integer class labels")
    t = t.to(torch.int64)
    if t.numel() and bool(((t < 0) | (t >= num_classes)).any()):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got [{int(t.min())}, {int(t.max())}]")
    return t


def confusion_matrix(true, pred, num_classes: int = 5) -> torch.Tensor:
    """(K, K) int64 counts; entry [i, j] = number of samples of true class i predicted as j."""
    t, p = _labels(true, "true", num_classes), _labels(pred, "pred", num_classes)
    if t.shape != p.shape:
        raise ValueError(f"true, pred: different lengths {t.numel()} and {p.numel()}")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(true, pred, num_classes: int = 5) -> float:
    cm = confusion_matrix(true, pred, num_classes)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("true: empty")
    return float(cm.diagonal().sum()) / n


def quadratic_weighted_kappa(true, pred, num_classes: int = 5) -> float:
    """Cohen's kappa with quadratic weights; 1.0 when both raters are constant and agree."""
    O = confusion_matrix(true, pred, num_classes).to(torch.float64)
    n = float(O.sum())
    if n == 0:
        raise ValueError("true: empty")
    K = num_classes
    i = torch.arange(K, dtype=torch.float64)
    W = (i[:, None] - i[None, :]) ** 2 / max(1, (K - 1)) ** 2
    E = torch.outer(O.sum(dim=1), O.sum(dim=0)) / n
    den = float((W * E).sum())
    if den == 0:
        return 1.0 if float((W * O).sum()) == 0 else 0.0
    return 1.0 - float((W * O).sum()) / den


def classification_metrics(true, pred, num_classes: int = 5) -> dict:
    """``{"accuracy", "qwk", "confusion"}`` (confusion as a nested list)."""
    return {"accuracy": accuracy(true, pred, num_classes),
            "qwk": quadratic_weighted_kappa(true, pred, num_classes),
            "confusion": confusion_matrix(true, pred, num_classes).tolist()}
