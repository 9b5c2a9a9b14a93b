"""Pictures: windowing of attenuation images, layer contact sheets, JSW sweeps, the demo gallery.

All figures are written with matplotlib's Agg backend (no display needed) and atomically (a
temporary file in the target directory, then ``os.replace``), so an interrupted run never
leaves a half-written PNG; the file gets the user's umask (:mod:`lsn_fast.utils.files`).
Sheets of many images are laid out in rows of at most :data:`MAX_COLS` panels, so they read
at screen width.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from lsn_fast.utils.files import atomic_write

MAX_COLS = 5  # panels per row of a sheet: 5 x 2.4 in at 110 dpi is ~1300 px wide


def window(img: torch.Tensor, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map an attenuation image (H,W) to [0, 1] for display (bone bright) by percentiles."""
    a = img.detach().float().cpu()
    lo = torch.quantile(a.flatten(), lo_pct / 100.0)
    hi = torch.quantile(a.flatten(), hi_pct / 100.0)
    return ((a - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1).numpy()


def fmt_mm(v, digits: int = 3) -> str:
    """Format a length in mm without printing a negative zero."""
    v = float(v)
    if abs(v) < 0.5 * 10.0**-digits:
        v = 0.0
    return f"{v:.{digits}f}"


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> str:
    """Save a matplotlib figure atomically; returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white"))
    finally:
        pyplot().close(fig)
    return path


def layer_window(layer: torch.Tensor) -> np.ndarray:
    """Map a layer (H,W), a thickness-like map >= 0, to [0, 1] for display: 0 stays black, the
    maximum is white, and where most of the layer sits near its maximum (the soft tissue of a
    finger is a near-flat plateau) a gamma stretches it so that its median lands at 0.5 and the
    plateau's gradient shows instead of a saturated white field."""
    a = layer.detach().float().cpu()
    top = float(a.max())
    if not top > 0:
        return torch.zeros_like(a).numpy()
    v = (a / top).clamp(0, 1)
    inside = v[v > 0.02]
    if inside.numel():
        med = float(inside.median())
        if 0.5 < med < 1.0:
            v = v ** (math.log(0.5) / math.log(med))
    return v.numpy()


def add_scale_bar(ax, spacing_mm: float, width_px: int, height_px: int, length_mm: float = 5.0) -> None:
    """Draw a white scale bar of ``length_mm`` in the lower-left corner of an image axis."""
    n = length_mm / spacing_mm
    if n > 0.6 * width_px:
        length_mm = max(1.0, round(0.3 * width_px * spacing_mm))
        n = length_mm / spacing_mm
    x0, y0 = 0.05 * width_px, 0.93 * height_px
    ax.plot([x0, x0 + n], [y0, y0], color="white", lw=3, solid_capstyle="butt")
    ax.text(x0 + n / 2, y0 - 0.02 * height_px, f"{length_mm:g} mm", color="white", ha="center", va="bottom", fontsize=7)


def layer_sheet(stack, images: torch.Tensor | None = None, path: str | os.PathLike = "layers.png", max_rows: int = 4,
                titles: list[str] | None = None) -> str:
    """Contact sheet: per sample, the radiograph (if given) and its soft, upper and lower layers."""
    plt = pyplot()
    B = min(stack.batch_size, max_rows)
    cols = 4 if images is not None else 3
    fig, axes = plt.subplots(B, cols, figsize=(2.3 * cols, 2.3 * B), squeeze=False)
    names = (["radiograph"] if images is not None else []) + ["soft", "upper bone", "lower bone"]
    H, W = stack.shape[1:]
    for b in range(B):
        panels = ([images[b, 0]] if images is not None else []) + [stack.soft[b], stack.upper[b], stack.lower[b]]
        for c, (p, name) in enumerate(zip(panels, names)):
            ax = axes[b, c]
            ax.imshow(layer_window(p) if c >= cols - 3 else window(p), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                add_scale_bar(ax, stack.spacing_mm, W, H)
                if titles:
                    ax.set_ylabel(titles[b], fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def jsw_sweep(images: torch.Tensor, measured_mm, requested_mm, spacing_mm: float, path: str | os.PathLike,
              reached_mm=None) -> str:
    """One joint at several JSWs: images (K,1,H,W), with the JSW asked (and, where ``reached_mm``
    differs from it, e.g. whole-pixel moves, the JSW reached) and the JSW measured under each.
    Rows of at most :data:`MAX_COLS` panels, one intensity window for the whole sweep (so
    brightness differences are real)."""
    K = images.shape[0]
    lo = float(torch.quantile(images.float().flatten(), 0.005))
    hi = float(torch.quantile(images.float().flatten(), 0.995))
    shown = ((images.float() - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
    captions = []
    for k in range(K):
        c = f"asked {float(requested_mm[k]):.2f} mm"
        if reached_mm is not None and abs(float(reached_mm[k]) - float(requested_mm[k])) >= 0.005:
            c += f", reached {float(reached_mm[k]):.2f}"
        captions.append(c + f"\nmeasured {fmt_mm(measured_mm[k])} mm")
    fig = grid_figure(shown, captions, spacing_mm, title="one joint re-synthesized at new joint space widths", windowed=True)
    return save_figure(fig, path)


def grid_figure(images: torch.Tensor, labels: list[str], spacing_mm: float, ncols: int | None = None,
                title: str | None = None, windowed: bool = False):
    """The figure of :func:`image_grid` (returned, not saved): rows of ``ncols`` panels (default
    ``min(N, MAX_COLS)``), a caption under each, laid out by matplotlib's constrained layout so
    that no caption runs into the row below. ``windowed``: the images are already in [0, 1]."""
    plt = pyplot()
    N = images.shape[0]
    ncols = max(1, min(N, MAX_COLS) if ncols is None else ncols)
    nrows = math.ceil(N / ncols)
    lines = max((lab.count("\n") + 1 for lab in labels), default=1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, (2.45 + 0.2 * lines) * nrows + (0.35 if title else 0)),
                             squeeze=False, layout="constrained")
    H, W = images.shape[-2:]
    for i in range(nrows * ncols):
        ax = axes[i // ncols, i % ncols]
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= N:
            ax.axis("off")
            continue
        img = images[i, 0].float().cpu().numpy() if windowed else window(images[i, 0])
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_xlabel(labels[i], fontsize=8)
        if i == 0:
            add_scale_bar(ax, spacing_mm, W, H)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def image_grid(images: torch.Tensor, labels: list[str], spacing_mm: float, path: str | os.PathLike, ncols: int = 4,
               title: str | None = None) -> str:
    """A grid of radiographs (N,1,H,W) with a caption under each (see :func:`grid_figure`)."""
    return save_figure(grid_figure(images, labels, spacing_mm, ncols=min(ncols, MAX_COLS), title=title), path)
