"""Task 2: joint space narrowing (JSN) between two visits of one joint, in mm (positive = narrowing).

:func:`quantify_jsn` has two methods:

``method="poc"`` — classical, no learning (phase-only correlation, POC):

1. **Split.** The joint line is found on the *baseline*: the image is smoothed, cut into
   vertical bands, and in each band the row profile's deepest valley between two bright parts
   (the dark joint space between the two bones; ``valley(y) = min(max_{y'<y} p, max_{y'>y} p) − p(y)``)
   gives a joint row; a line ``y = a + b·x`` is fitted to the band rows, weighted by the valley
   depth (so tilted fingers are handled). With ``masks=(upper, lower)`` the line is instead the
   per-column midpoint between the upper mask's lower edge and the lower mask's upper edge.
2. **Windows.** Upper region = above the line, lower region = below it, each multiplied by a 2-D
   Hann window (which also weights the bone ends near the image centre most), with a 2-px cosine
   ramp at the line. The same windows are used for both visits.
3. **Pre-filter.** Vertical derivative (central difference, [1,2,1]/4 across): keeps the bone
   ends and trabecular texture, suppresses the slowly varying, static soft tissue and the finger
   outline (vertical edges) that would otherwise pull the estimate towards zero.
4. **POC.** For each region, the cross-power spectrum ``F_f·conj(F_b)`` normalized to unit
   magnitude, weighted by a Gaussian low-pass (σ = ``band`` cycles/px, default 0.15: the
   correlation peak becomes a Gaussian of σ ≈ 1 px), inverse FFT, integer peak, then a
   3-point Gaussian fit per axis for the sub-pixel part (parabolic if a neighbour is <= 0).
   Then ``refine`` (default 2) iterations: shift the follow-up back by the estimate (Fourier
   shift of the filtered image), re-window, re-correlate, add the residual.
5. **JSN** = ``(d_upper − d_lower) · (−axis) · spacing``: the change of the separation of the
   two bones along the joint axis (``axis`` points from the lower to the upper bone; default:
   perpendicular to the fitted joint line). A global repositioning of the finger moves both
   bones alike and cancels.

``method="learned"`` — :class:`SiameseJSN`: a shared conv encoder on each visit, feature maps
fused as ``[f_b, f_f, f_f − f_b]``, more convolutions, pooling, an MLP -> Δ mm. Train it with
:func:`train_jsn_model` on pairs (the experiment synthesizes them with the LSN).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from lsn_fast.physics.layers import LayerStack
from lsn_fast.utils.validation import FLOAT_DTYPES, check_positive_float, check_tensor
from lsn_fast.tasks.common import (ConvEncoder, as_source, batched_apply, check_images, check_int, check_model, check_seed,
                      check_train_args, checked_source, fit, model_device, normalize_images, pool_features, to_tensor)
from lsn_fast.tasks.metrics import pearson_r, regression_metrics

__all__ = ["quantify_jsn", "poc_displacement", "joint_line", "region_windows", "SiameseJSN", "train_jsn_model",
           "evaluate_jsn", "output_spread", "output_fit", "jsn_flag_reasons", "JSN_FLAG_NAMES"]


# ----------------------------------------------------------------------------- helpers
def _gauss1d(sigma: float, device) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B,1,H,W), replicate borders."""
    k = _gauss1d(sigma, x.device)
    r = (k.numel() - 1) // 2
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))


def _hann(n: int, device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float32)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * (i + 0.5) / n)


def joint_line(images: torch.Tensor, bands: int = 8, search: tuple[float, float] = (0.15, 0.85)):
    """Fit the joint line ``y = a + b·x`` (pixel-centre coordinates) on (B,1,H,W) images.

    ``bands``: number of vertical bands, an int >= 1 (at least 2 and at most W/4 are used).
    ``search``: ``(lo, hi)``, the rows searched for the joint as fractions of the height, finite
    with ``0 <= lo < hi <= 1``.

    Returns ``(a (B,), b (B,))`` float32. See the module docstring (step 1)."""
    check_images(images)
    check_int(bands, "bands")
    search = _check_search(search)
    x = images.float()
    B, _, H, W = x.shape
    x = _smooth(x, max(1.0, H / 64))
    nb = max(2, min(bands, W // 4))
    edges = torch.linspace(0, W, nb + 1).round().long().tolist()
    rows, wts, xs = [], [], []
    lo, hi = int(search[0] * H), max(int(search[0] * H) + 1, int(search[1] * H))
    for k in range(nb):
        p = x[:, 0, :, edges[k]:edges[k + 1]].mean(dim=2)  # (B,H)
        top = torch.cummax(p, dim=1).values
        bot = torch.flip(torch.cummax(torch.flip(p, [1]), dim=1).values, [1])
        v = torch.minimum(top, bot) - p
        v[:, :lo] = -1
        v[:, hi:] = -1
        depth, r = v.max(dim=1)
        # sub-row refinement of the valley by a parabola through the profile
        r = r.clamp(1, H - 2)
        pm, p0, pp = p.gather(1, (r - 1)[:, None]), p.gather(1, r[:, None]), p.gather(1, (r + 1)[:, None])
        den = (pm - 2 * p0 + pp).squeeze(1)
        off = torch.where(den > 1e-12, 0.5 * (pm - pp).squeeze(1) / den.clamp_min(1e-12), torch.zeros_like(den)).clamp(-0.5, 0.5)
        rows.append(r.float() + off)
        wts.append(depth.clamp_min(0))
        xs.append(torch.full((B,), 0.5 * (edges[k] + edges[k + 1]) - 0.5))
    Y, Wt, X = torch.stack(rows, 1), torch.stack(wts, 1), torch.stack(xs, 1).to(x.device)
    # keep bands whose valley is at least 30 % of the deepest (bands in air or off the bone drop out)
    Wt = torch.where(Wt >= 0.3 * Wt.amax(dim=1, keepdim=True), Wt, torch.zeros_like(Wt)) + 1e-12
    sw = Wt.sum(1)
    mx, my = (Wt * X).sum(1) / sw, (Wt * Y).sum(1) / sw
    sxx = (Wt * (X - mx[:, None]) ** 2).sum(1)
    sxy = (Wt * (X - mx[:, None]) * (Y - my[:, None])).sum(1)
    b = torch.where(sxx > 1e-6, sxy / sxx.clamp_min(1e-6), torch.zeros_like(sxx)).clamp(-0.4, 0.4)  # |tilt| <= ~22°
    a = my - b * mx
    return a, b


def _check_search(search) -> tuple[float, float]:
    if isinstance(search, (str, bytes)) or not isinstance(search, (tuple, list, torch.Tensor)) or len(search) != 2:
        raise TypeError(f"search: expected a pair (lo, hi) of row fractions, got {search!r}")
    out = []
    for v in search:
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"search: expected a pair (lo, hi) of numbers, got {search!r}")
        out.append(v)
    lo, hi = out
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= 1.0):
        raise ValueError(f"search: expected finite fractions 0 <= lo < hi <= 1, got {tuple(out)}")
    return lo, hi


def _line_from_masks(upper: torch.Tensor, lower: torch.Tensor):
    """Per-column split row between an upper and a lower bone mask (B,H,W) -> (B,W) float."""
    B, H, W = upper.shape
    y = torch.arange(H, device=upper.device, dtype=torch.float32).view(1, H, 1)
    mu, ml = upper > 0.5, lower > 0.5
    u_end = torch.where(mu, y, torch.full_like(y, -1.0).expand(B, H, W)).amax(dim=1)  # last upper row
    l_start = torch.where(ml, y, torch.full_like(y, float(H)).expand(B, H, W)).amin(dim=1)
    ok = (u_end >= 0) & (l_start < H) & (l_start > u_end)
    mid = 0.5 * (u_end + l_start)
    xs = torch.arange(W, device=upper.device, dtype=torch.float32).expand(B, W)
    w = ok.float() + 1e-9
    mx, my = (w * xs).sum(1) / w.sum(1), (w * mid).sum(1) / w.sum(1)
    sxx = (w * (xs - mx[:, None]) ** 2).sum(1)
    b = (w * (xs - mx[:, None]) * (mid - my[:, None])).sum(1) / sxx.clamp_min(1e-6)
    fit_line = my[:, None] + b[:, None] * (xs - mx[:, None])
    none = ~ok.any(dim=1)
    fit_line = torch.where(none[:, None], torch.full_like(fit_line, H / 2 - 0.5), fit_line)
    return torch.where(ok, mid, fit_line), b


def region_windows(shape, line: torch.Tensor, ramp_px: float = 2.0):
    """Upper/lower windows (B,1,H,W) from a per-column split row ``line`` (B,W)."""
    B, _, H, W = shape
    dev = line.device
    y = torch.arange(H, device=dev, dtype=torch.float32).view(1, H, 1)
    d = line.view(B, 1, W) - y  # > 0 above the line
    hann = (_hann(H, dev)[:, None] * _hann(W, dev)[None, :]).view(1, H, W)

    def ramp(t):
        t = (t / ramp_px + 0.5).clamp(0, 1)
        return 0.5 - 0.5 * torch.cos(math.pi * t)

    return (hann * ramp(d)).unsqueeze(1), (hann * ramp(-d)).unsqueeze(1)


def _dy_filter(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[-0.125, 0.0, 0.125], [-0.25, 0.0, 0.25], [-0.125, 0.0, 0.125]], device=x.device).t()
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))  # d/dy, smoothed in x


def _freqs(H: int, W: int, device):
    return torch.fft.fftfreq(H, device=device).view(H, 1), torch.fft.rfftfreq(W, device=device).view(1, -1)


def _fourier_shift(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """x(r − d) for (B,1,H,W) x and (B,2) d = (dy, dx) px, periodic."""
    B, _, H, W = x.shape
    fy, fx = _freqs(H, W, x.device)
    ph = torch.exp(-2j * math.pi * (fy * d[:, 0].view(B, 1, 1, 1) + fx * d[:, 1].view(B, 1, 1, 1)))
    return torch.fft.irfft2(torch.fft.rfft2(x) * ph, s=(H, W))


def _subpixel(rm, r0, rp):
    """Offset of the peak from the centre sample given three samples (Gaussian fit, else parabola)."""
    pos = (rm > 0) & (r0 > 0) & (rp > 0)
    lm, l0, lp = torch.log(rm.clamp_min(1e-30)), torch.log(r0.clamp_min(1e-30)), torch.log(rp.clamp_min(1e-30))
    dg = lm - 2 * l0 + lp
    g = torch.where(dg < -1e-12, 0.5 * (lm - lp) / dg.clamp_max(-1e-12), torch.zeros_like(dg))
    dp = rm - 2 * r0 + rp
    p = torch.where(dp < -1e-12, 0.5 * (rm - rp) / dp.clamp_max(-1e-12), torch.zeros_like(dp))
    return torch.where(pos, g, p).clamp(-1, 1)


def poc_displacement(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor | None = None, band: float | None = 0.15,
                     window_b: torch.Tensor | None = None) -> torch.Tensor:
    """Displacement ``d`` (B,2) = (dy, dx) px with ``b(r) ≈ a(r − d)`` by phase-only correlation.

    ``a``, ``b``: (B,1,H,W) (already pre-filtered); ``window``: (B or 1,1,H,W), applied to ``a``
    (and to ``b`` unless ``window_b`` is given) after removing each image's weighted mean
    (default: 2-D Hann). ``band``: σ of the Gaussian weight on the normalized cross-power
    spectrum, cycles/px (None: plain POC). Sub-pixel peak: 3-point Gaussian fit per axis.

    Checked: ``a``, ``b`` finite float tensors of one shape (B,1,H,W) on one device; windows
    finite, >= 0, of shape (B or 1,1,H,W), none all zero; ``band`` None or a finite number > 0."""
    a = _check_poc_image(a, "a")
    b = _check_poc_image(b, "b")
    if b.shape != a.shape:
        raise ValueError(f"b: shape {tuple(b.shape)} differs from a's {tuple(a.shape)}")
    if b.device != a.device:
        raise ValueError(f"b: on {b.device}, a on {a.device}")
    if window is not None:
        _check_window(window, "window", a)
    if window_b is not None:
        _check_window(window_b, "window_b", a)
    if band is not None:
        band = check_positive_float(band, "band")
    return _poc_displacement(a, b, window, band, window_b)


def _check_poc_image(x, name: str) -> torch.Tensor:
    check_tensor(x, name, ndim=4, dtypes=FLOAT_DTYPES)
    if x.shape[1] != 1:
        raise ValueError(f"{name}: expected (B,1,H,W), got shape {tuple(x.shape)}")
    return x


def _check_window(w, name: str, a: torch.Tensor) -> None:
    B, _, H, W = a.shape
    check_tensor(w, name, ndim=4, dtypes=FLOAT_DTYPES)
    if w.shape[0] not in (1, B) or tuple(w.shape[1:]) != (1, H, W):
        raise ValueError(f"{name}: expected shape (1 or {B},1,{H},{W}), got {tuple(w.shape)}")
    if w.device != a.device:
        raise ValueError(f"{name}: on {w.device}, a on {a.device}")
    if bool((w < 0).any()):
        raise ValueError(f"{name}: contains negative weights (min {float(w.min()):.4g})")
    if not bool((w.flatten(1).amax(dim=1) > 0).all()):
        raise ValueError(f"{name}: all zero (for at least one sample): nothing to correlate")


def _poc_displacement(a, b, window=None, band=0.15, window_b=None) -> torch.Tensor:
    """:func:`poc_displacement` without the input checks (internal callers pass checked inputs)."""
    if window is None:
        H, W = a.shape[-2:]
        window = (_hann(H, a.device)[:, None] * _hann(W, a.device)[None, :]).view(1, 1, H, W)
    return _poc_surface(a, b, window, band, window_b)[0]


def _check_masks(masks, shape):
    if masks is None:
        return None
    if not (isinstance(masks, (tuple, list)) and len(masks) == 2):
        raise TypeError("masks: expected a pair (upper_mask, lower_mask) of (B,1,H,W) or (B,H,W) tensors")
    out = []
    for name, m in zip(("masks[0]", "masks[1]"), masks):
        if not isinstance(m, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(m).__name__}")
        m = m.float()
        if m.ndim == 4:
            m = m[:, 0]
        if tuple(m.shape) != (shape[0], shape[2], shape[3]):
            raise ValueError(f"{name}: expected shape ({shape[0]},1,{shape[2]},{shape[3]}), got {tuple(m.shape)}")
        out.append(m)
    return out


def _check_axis(axis, B: int, device):
    if axis is None:
        return None
    from lsn_fast.physics.axis import normalize_axis

    if isinstance(axis, bool) or isinstance(axis, (str, bytes)):
        raise TypeError(f"axis: expected an angle in degrees, a (2,) or a ({B}, 2) tensor of (dy, dx), got {axis!r}")
    if not isinstance(axis, (int, float, torch.Tensor)):
        axis = to_tensor(axis, "axis", torch.float32)
    return normalize_axis(axis, B, device)


def _poc_jsn(baseline, followup, spacing_mm, m=None, ax=None, band=0.15, refine=2):
    """``m``, ``ax``: the results of :func:`_check_masks` and :func:`_check_axis` (or None)."""
    B, _, H, W = baseline.shape
    dev = baseline.device
    xb, xf = baseline.float(), followup.float()
    xs = torch.arange(W, device=dev, dtype=torch.float32)
    a_b, b_b = joint_line(xb)
    a_f, b_f = joint_line(xf)
    line_b = a_b[:, None] + b_b[:, None] * xs[None, :]
    line_f = a_f[:, None] + b_f[:, None] * xs[None, :]
    slope = b_b
    if m is not None:  # split of the baseline from its masks; the follow-up's moves like the profile's
        mline, slope = _line_from_masks(m[0].to(dev), m[1].to(dev))
        line_f = mline + (line_f - line_b)
        line_b = mline
    if ax is None:  # perpendicular to the joint line, pointing up (towards the upper bone)
        ax = torch.stack([-torch.ones_like(slope), slope], 1)
        ax = ax / ax.norm(dim=1, keepdim=True)
    # the split line lies in the middle of each image's own joint space, so neither bone crosses
    # it however much the joint narrows; the follow-up's windows move with the back-shift
    wb = region_windows(xb.shape, line_b)
    fb, ff = _dy_filter(xb), _dy_filter(xf)
    wf0 = region_windows(xf.shape, line_f)
    fwd, bwd = [], []
    for k in range(2):
        fwd.append(_register(fb, ff, wb[k], lambda d, k=k: region_windows(xf.shape, line_f - d[:, :1])[k], band, refine))
        bwd.append(_register(ff, fb, wf0[k], lambda d, k=k: region_windows(xb.shape, line_b - d[:, :1])[k], band, refine))
    jsn, det = _pair_result(fwd, bwd, ax, spacing_mm)
    det.update(line_baseline=line_b, line_followup=line_f)
    return jsn, det


# ----------------------------------------------------------------------------- learned model
class SiameseJSN(nn.Module):
    """(baseline, follow-up) -> narrowing in mm (positive = narrowing).

    A shared 2-level encoder (stride 4) on each per-image-standardized visit; the feature maps
    are fused as ``[f_b, f_f, f_f − f_b]`` and go through 2 more strided conv stages, global
    average+max pooling and an MLP. ``scale`` (mm) sets the output's initial spread."""

    def __init__(self, width: int = 16, scale_mm: float = 0.5):
        super().__init__()
        self.encoder = ConvEncoder(1, width, levels=2)
        c = self.encoder.out_channels
        self.fuse = ConvEncoder(3 * c, 2 * c, levels=2)
        self.head = nn.Sequential(nn.Linear(2 * self.fuse.out_channels, 64), nn.SiLU(), nn.Linear(64, 1))
        self.register_buffer("scale", torch.tensor(float(scale_mm)))

    def forward(self, baseline: torch.Tensor, followup: torch.Tensor) -> torch.Tensor:
        B = baseline.shape[0]
        f = self.encoder(normalize_images(torch.cat([baseline, followup])))
        fb, ff = f[:B], f[B:]
        h = self.fuse(torch.cat([fb, ff, ff - fb], dim=1))
        return self.scale * self.head(pool_features(h)).squeeze(1)


def _jsn_loss(model, batch):
    a, b, y = batch[0], batch[1], batch[2]
    return F.smooth_l1_loss(model(a, b), y.to(a.device, torch.float32).reshape(-1), beta=0.05)


COLLAPSE_SPREAD = 0.2  # prediction std / label std below this: the model ignores its input
# prediction-label correlation below this: the model's output moves, but not with the labels (a
# full-resolution (c1) model had spread 0.23, r 0.04 on its synthesized pairs, r 0.007 on test)
COLLAPSE_R = 0.5


@torch.no_grad()
def output_fit(model: SiameseJSN, source, n: int = 256, seed: int = 0) -> tuple[float, float]:
    """``(spread, r)`` on one batch of ``n`` pairs from the batch function ``source`` (drawn with
    its own generator, so a training stream is untouched): spread = std(predictions) /
    std(labels), about 1 for a model that tracks its labels and near 0 for one that predicts one
    value for every pair; r = Pearson correlation of predictions and labels (0 if either is
    constant). ``model``: an ``nn.Module``; ``source``: a batch function; ``n``: an int >= 2."""
    check_model(model)
    if not callable(source) or isinstance(source, torch.Tensor):
        raise TypeError(f"source: expected a batch function fn(batch_size, generator), got {type(source).__name__}")
    check_int(n, "n", 2)
    check_seed(seed)
    batch = source(n, torch.Generator().manual_seed(int(seed) + 104_729))
    dev = model_device(model)
    was_training = model.training
    model.eval()
    pred = batched_apply(lambda a, b: model(a.to(dev), b.to(dev)).cpu(), batch[0], batch[1]).float().reshape(-1)
    model.train(was_training)
    y = torch.as_tensor(batch[2]).float().reshape(-1)
    spread = float(pred.std() / y.std().clamp_min(1e-6))
    r = pearson_r(pred, y)
    return spread, (r if math.isfinite(r) else 0.0)  # NaN: a constant output or labels


def output_spread(model: SiameseJSN, source, n: int = 256, seed: int = 0) -> float:
    """std(predictions) / std(labels) of :func:`output_fit`."""
    return output_fit(model, source, n, seed)[0]


def train_jsn_model(baseline=None, followup=None, jsn_mm=None, *, source=None, model: SiameseJSN | None = None,
                    steps: int = 300, batch_size: int = 32, lr: float = 2e-3, seed: int = 0, augment=None,
                    device=None, progress: bool = False, restarts: int = 2) -> SiameseJSN:
    """Train (or fine-tune) a :class:`SiameseJSN` on pairs: tensors ``baseline, followup`` (N,1,H,W)
    with ``jsn_mm`` (N,), or ``source`` (iterable of ``(baseline, followup, jsn)`` batches or a
    batch function ``fn(batch_size, generator)``).

    Collapse guard: some initializations never leave the label median (seen at 128² px: MAE
    0.24 mm where another init reaches 0.02; prediction std 0.007 mm for labels of 0.29). A new
    model whose :func:`output_fit` on its training source ends with a spread below
    ``COLLAPSE_SPREAD`` or a prediction-label correlation below ``COLLAPSE_R`` is trained again from a new
    initialization and data order (seed + 1000·k), at most ``restarts`` times, with a warning; the
    number used is in ``model.restarts``. A first attempt that does not collapse is exactly the
    unguarded result. Not applied to fine-tuning (a passed ``model``) or to iterable sources
    (they cannot be peeked at).

    Checked before anything reaches the model: ``jsn_mm`` finite, one per pair; a ``source``'s
    batches (a tuple of tensors whole; of an iterable or a batch function, the first batch
    drawn) must be ``(baseline, followup (B,1,H,W) finite and of one shape, jsn (B,) finite,
    ...)``; a passed ``model`` must be a :class:`SiameseJSN`; ``steps``, ``batch_size`` ints
    >= 1, ``lr`` > 0, ``augment`` None or callable, ``device`` an available torch device
    (``"cuda"`` without a GPU is an error)."""
    device = check_train_args(steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=augment, device=device)
    if model is not None:
        check_model(model, SiameseJSN)
    if source is None:
        if baseline is None or followup is None or jsn_mm is None:
            raise ValueError("baseline, followup, jsn_mm: give all three, or a source")
        check_images(baseline, "baseline")
        check_images(followup, "followup")
        if baseline.shape != followup.shape:
            raise ValueError(f"followup: shape {tuple(followup.shape)} differs from baseline {tuple(baseline.shape)}")
        jsn_mm = to_tensor(jsn_mm, "jsn_mm", torch.float32).reshape(-1)
        if jsn_mm.shape[0] != baseline.shape[0]:
            raise ValueError(f"jsn_mm: expected {baseline.shape[0]} labels, got {jsn_mm.shape[0]}")
        if not bool(torch.isfinite(jsn_mm).all()):
            raise ValueError("jsn_mm: contains NaN or Inf")
        source = as_source((baseline, followup, jsn_mm))
        peekable = True
    else:
        peekable = callable(source) and not isinstance(source, torch.Tensor)
        source = checked_source(source, (("baseline", "images"), ("followup", "images"), ("jsn", "values")))
    if not (isinstance(restarts, int) and restarts >= 0):
        raise ValueError(f"restarts: must be an int >= 0, got {restarts!r}")
    new = model is None
    attempts = restarts + 1 if (new and peekable) else 1
    for k in range(attempts):
        s = int(seed) + 1000 * k
        torch.manual_seed(s)
        if new:
            model = SiameseJSN()
            if jsn_mm is not None and jsn_mm.numel() > 1:
                model.scale.fill_(max(float(jsn_mm.std()), 0.05))
        if device is not None:
            model = model.to(device)
        fit(model, source, _jsn_loss, steps=steps, batch_size=batch_size, lr=lr, seed=s, augment=augment,
            progress=progress, desc="jsn")
        model.restarts = k
        if attempts == 1:
            break
        spread, r = output_fit(model, source, seed=seed)
        if spread >= COLLAPSE_SPREAD and r >= COLLAPSE_R:
            break
        warnings.warn(f"train_jsn_model: the model collapsed (prediction std {spread:.3f} of the labels', "
                      f"correlation {r:.3f}, after {steps} steps, seed {s}); "
                      + (f"restarting with seed {s + 1000}" if k + 1 < attempts else "no restarts left, returning it"),
                      stacklevel=2)
    return model


# ----------------------------------------------------------------------------- confidence
# A pair is flagged (and its JSN NaN unless on_doubt="keep") when any check fails; the numbers
# are the study's (lab/2026-12-07-jsw-jsn-independent/), set on the main phantom's pairs.
JSN_MIN_PEAK = 0.05  # normalized POC peak height (1 = identical regions), each bone
JSN_MAX_SIDELOBE = 0.7  # second peak (> 3 px away) over the main peak, each bone
JSN_MAX_FB_PX = 0.3  # |forward + backward| displacement, each bone, px
JSN_MAX_PERP_PX = 1.0  # the two bones' displacements across the axis differ by more than this
JSN_MAX_ABS_MM = 3.0  # a narrowing beyond this between two visits is not believed
JSN_FLAG_NAMES = {1: "low_peak", 2: "ambiguous_peak", 4: "forward_backward", 8: "bones_disagree", 16: "implausible",
                  32: "separation"}


def jsn_flag_reasons(flags) -> list[list[str]]:
    """Names of the set bits of ``details["flags"]`` of :func:`quantify_jsn`, per pair."""
    return [[n for b, n in JSN_FLAG_NAMES.items() if int(v) & b] for v in torch.as_tensor(flags).reshape(-1).tolist()]


def _poc_surface(a, b, window, band, window_b=None):
    """POC of prepared (B,1,H,W) images -> (displacement (B,2), peak height (B,), sidelobe ratio (B,))."""
    B, _, H, W = a.shape
    if window_b is None:
        window_b = window

    def prep(x, w):
        ws = w.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return (x - (x * w).sum(dim=(2, 3), keepdim=True) / ws) * w

    Fa, Fb = torch.fft.fft2(prep(a, window).double()), torch.fft.fft2(prep(b, window_b).double())
    R = Fb * Fa.conj()
    R = R / (R.abs() + 1e-12 * R.abs().amax(dim=(2, 3), keepdim=True) + 1e-30)
    fy = torch.fft.fftfreq(H, device=a.device, dtype=torch.float64).view(H, 1)
    fx = torch.fft.fftfreq(W, device=a.device, dtype=torch.float64).view(1, W)
    G = torch.exp(-(fy**2 + fx**2) / (2 * band**2)) if band is not None else torch.ones(H, W, dtype=torch.float64, device=a.device)
    r = torch.fft.ifft2(R * G).real[:, 0] / G.mean()  # identical images: peak 1
    flat = r.reshape(B, -1).argmax(dim=1)
    iy, ix = flat // W, flat % W
    bi = torch.arange(B, device=a.device)
    r0 = r[bi, iy, ix]
    dy = _subpixel(r[bi, (iy - 1) % H, ix], r0, r[bi, (iy + 1) % H, ix])
    dx = _subpixel(r[bi, iy, (ix - 1) % W], r0, r[bi, iy, (ix + 1) % W])
    py = torch.where(iy > H // 2, iy - H, iy).double() + dy
    px = torch.where(ix > W // 2, ix - W, ix).double() + dx
    yy = torch.arange(H, device=a.device).view(1, H, 1)
    xx = torch.arange(W, device=a.device).view(1, 1, W)
    ddy = (yy - iy.view(B, 1, 1)) % H
    ddx = (xx - ix.view(B, 1, 1)) % W
    ddy = torch.minimum(ddy, H - ddy)
    ddx = torch.minimum(ddx, W - ddx)
    far = (ddy * ddy + ddx * ddx) > 9
    side = torch.where(far, r, torch.full_like(r, -1e30)).reshape(B, -1).amax(dim=1)
    return torch.stack([py, px], dim=1).float(), r0.float(), (side / r0.abs().clamp_min(1e-12)).float()


def _register(fa, fb, wa, wb_fn, band, refine):
    """Iterated POC of fb against fa; wb_fn(d) gives fb's window after a back-shift d."""
    B = fa.shape[0]
    d = torch.zeros(B, 2, device=fa.device)
    peak = side = None
    for it in range(refine + 1):
        fbs = fb if it == 0 else _fourier_shift(fb, -d)
        dd, peak, side = _poc_surface(fa, fbs, wa, band, window_b=wb_fn(d))
        d = d + dd
    return d, peak, side


def _pair_result(fwd, bwd, ax, spacing_mm, flags0=None):
    """JSN and the confidence checks of one batch of pairs from each bone's registrations.

    fwd, bwd: ``[(d, peak, sidelobe) of the upper bone, (...) of the lower bone]`` from
    :func:`_register`, baseline -> follow-up and back; flags0: bits already set (B,) int32 or None.
    Returns ``(jsn (B,) mm, details)`` (the keys of :func:`quantify_jsn`'s ``return_details``)."""
    (du, pku, sdu), (dl, pkl, sdl) = fwd
    du_b, dl_b = bwd[0][0], bwd[1][0]
    jsn = ((du - dl) * (-ax)).sum(dim=1) * spacing_mm
    pk, sd = torch.stack([pku, pkl], 1), torch.stack([sdu, sdl], 1)
    perp = torch.stack([-ax[:, 1], ax[:, 0]], 1)
    fb = torch.stack([(du + du_b).norm(dim=1), (dl + dl_b).norm(dim=1)], 1)
    dperp = ((du - dl) * perp).sum(1).abs()
    flags = torch.zeros(jsn.shape[0], dtype=torch.int32, device=jsn.device) if flags0 is None else flags0.clone()
    for cond, bit in (((pk < JSN_MIN_PEAK).any(1), 1), ((sd > JSN_MAX_SIDELOBE).any(1), 2), ((fb > JSN_MAX_FB_PX).any(1), 4),
                      (dperp > JSN_MAX_PERP_PX, 8), (~torch.isfinite(jsn) | (jsn.abs() > JSN_MAX_ABS_MM), 16)):
        flags = flags | (cond.to(torch.int32) * bit)
    conf = (pk.amin(1) / 0.3).clamp(0, 1) * (1 - sd.amax(1)).clamp(0, 1) * (1 - fb.amax(1) / (2 * JSN_MAX_FB_PX)).clamp(0, 1)
    return jsn, {"d_upper_px": du, "d_lower_px": dl, "d_upper_backward_px": du_b, "d_lower_backward_px": dl_b,
                 "axis": ax, "peak": pk, "sidelobe": sd, "fb_px": fb, "perp_disagreement_px": dperp,
                 "confidence": conf.float(), "flags": flags}


def _layer_poc_jsn(baseline, followup, spacing_mm, layers, ax, band, refine, lsn_model):
    """Partial-image POC on each bone's separated layer (both visits), forward and backward."""
    from lsn_fast.model.lsn import separate
    from lsn_fast.physics.jsw import estimate_axis

    if layers is None:
        sb = separate(baseline.float(), model=lsn_model, spacing_mm=spacing_mm)
        sf = separate(followup.float(), model=lsn_model, spacing_mm=spacing_mm)
    else:
        sb, sf = layers
    B, _, H, W = baseline.shape
    dev = baseline.device
    if ax is None:
        ax = estimate_axis(sb).to(dev)
    hann = (_hann(H, dev)[:, None] * _hann(W, dev)[None, :]).view(1, 1, H, W)
    fwd, bwd = [], []
    for lb, lf_ in ((sb.upper, sf.upper), (sb.lower, sf.lower)):
        a = lb.to(dev).float().unsqueeze(1)
        b = lf_.to(dev).float().unsqueeze(1)
        fwd.append(_register(a, b, hann, lambda d: hann, band, refine))
        bwd.append(_register(b, a, hann, lambda d: hann, band, refine))
    # a bone missing from a separated layer: nothing to register
    empty = (sb.upper.flatten(1).amax(1) <= 0) | (sb.lower.flatten(1).amax(1) <= 0) | \
            (sf.upper.flatten(1).amax(1) <= 0) | (sf.lower.flatten(1).amax(1) <= 0)
    jsn, det = _pair_result(fwd, bwd, ax, spacing_mm, flags0=empty.to(dev).to(torch.int32) * 32)
    det["layers"] = (sb, sf)
    return jsn, det


# ----------------------------------------------------------------------------- public entry
def quantify_jsn(baseline: torch.Tensor, followup: torch.Tensor, spacing_mm: float = 0.1, method: str = "poc",
                 model: nn.Module | None = None, *, masks=None, axis=None, band: float = 0.15, refine: int = 2,
                 batch_size: int = 64, return_details: bool = False, regions: str = "layers", layers=None,
                 lsn_model=None, on_doubt: str = "nan") -> torch.Tensor | tuple[torch.Tensor, dict]:
    """Joint space narrowing between two visits of the same joints, (B,) mm, positive = narrowing.

    Args:
        baseline, followup: (B,1,H,W) attenuation images (bone bright), same shape, finger
            near vertical with the proximal bone on top.
        spacing_mm: pixel spacing, mm (> 0).
        method: ``"poc"`` (phase-only correlation of the two bone regions, no learning) or
            ``"learned"`` (``model``, a trained :class:`SiameseJSN`; it outputs mm directly, so
            use it at the spacing it was trained on).
        masks: optional ``(upper_mask, lower_mask)`` of the baseline, (B,1,H,W) or (B,H,W);
            the split between the regions then comes from them instead of the row profile.
        axis: joint axis (dy, dx) from the lower to the upper bone, an angle in degrees, or
            (B,2); default perpendicular to the fitted joint line.
        band: POC spectral weight σ, cycles/px, a finite number > 0 or None (plain POC).
            refine: POC refinement iterations, an int >= 0.
        batch_size: (learned) pairs per forward pass, an int >= 1.
        return_details: return ``(jsn, details)``. For ``"poc"``: ``d_upper_px``, ``d_lower_px``
            (B,2) px, each bone's displacement (dy, dx) from baseline to follow-up, and the
            backward ones (``d_*_backward_px``, follow-up to baseline); ``axis`` (B,2);
            ``peak`` (B,2) the normalized correlation peak of each bone (1 = identical),
            ``sidelobe`` (B,2) the second peak (> 3 px away) over the first, ``fb_px`` (B,2)
            ``|forward + backward|``, ``perp_disagreement_px`` (B,) the difference of the two
            bones' motions across the axis (a repositioning moves both alike), ``confidence``
            (B,) in [0, 1], ``flags`` (B,) int bits (:data:`JSN_FLAG_NAMES`, names by
            :func:`jsn_flag_reasons`; 0 = trusted), ``jsn_unflagged`` (B,) the numbers before the
            flagged ones became NaN; with ``regions="profile"`` also ``line_baseline``,
            ``line_followup`` (B,W) px; with ``"layers"`` the separated ``layers``. For
            ``"learned"``: ``{"flags": zeros}`` (the learned model has no confidence).
        regions: (poc) where the two bone regions come from: ``"layers"`` (default) — each bone's
            own layer separated by the LSN (:func:`lsn_fast.separate`, weights ``lsn_model``) from
            each visit, registered on its own (partial-image POC); ``"profile"`` — the row-profile
            split of the images (steps 1-2 of the module docstring; ``masks`` override it).
        layers: (poc, "layers") a pair ``(baseline_stack, followup_stack)`` of already separated
            :class:`LayerStack` to use instead of separating.
        lsn_model: (poc, "layers") an :class:`lsn_fast.LSN` or a shipped weights name; None = default.
        on_doubt: ``"nan"`` (default): a flagged pair's JSN is NaN; ``"keep"``: keep the number
            (the flags still say it is doubtful).
    Returns:
        (B,) mm, or ``(jsn, details)`` with ``return_details``. A pair fails the confidence checks
        (flag bits) when a bone's correlation peak is low (< ``JSN_MIN_PEAK``) or ambiguous
        (sidelobe > ``JSN_MAX_SIDELOBE``), forward and backward registration disagree
        (> ``JSN_MAX_FB_PX``), the bones' motions across the axis disagree (>
        ``JSN_MAX_PERP_PX``), the result is implausible (|JSN| > ``JSN_MAX_ABS_MM``), or a
        separated bone layer is empty. A sign flip of the POC (the failure issue #34 reported)
        comes with a wrong, ambiguous peak or a forward/backward mismatch; it is not caught
        when the registration converges to a consistent wrong match on both bones.
    """
    check_images(baseline, "baseline")
    check_images(followup, "followup")
    if followup.shape != baseline.shape:
        raise ValueError(f"followup: shape {tuple(followup.shape)} differs from baseline {tuple(baseline.shape)}")
    if followup.device != baseline.device:
        raise ValueError(f"followup: on {followup.device}, baseline on {baseline.device}")
    spacing_mm = check_positive_float(spacing_mm, "spacing_mm")
    check_int(batch_size, "batch_size")
    if method == "poc":
        if isinstance(refine, bool) or not (isinstance(refine, int) and refine >= 0):
            raise ValueError(f"refine: expected an int >= 0, got {refine!r}")
        if band is not None:
            check_positive_float(band, "band")
        ax = _check_axis(axis, baseline.shape[0], baseline.device)
        m = _check_masks(masks, baseline.shape)
        if regions not in ("layers", "profile"):
            raise ValueError(f"regions: expected 'layers' or 'profile', got {regions!r}")
        if on_doubt not in ("nan", "keep"):
            raise ValueError(f"on_doubt: expected 'nan' or 'keep', got {on_doubt!r}")
        if layers is not None:
            if not (isinstance(layers, (tuple, list)) and len(layers) == 2):
                raise TypeError("layers: expected a pair (baseline_stack, followup_stack) of LayerStack")
            for nm, st in zip(("layers[0]", "layers[1]"), layers):
                if not isinstance(st, LayerStack):
                    raise TypeError(f"{nm}: expected a LayerStack, got {type(st).__name__}")
                if tuple(st.shape) != (baseline.shape[0], baseline.shape[2], baseline.shape[3]):
                    raise ValueError(f"{nm}: shape {tuple(st.shape)} does not match the images' (B,H,W)")
        with torch.no_grad():
            if regions == "layers" and m is None:
                jsn, det = _layer_poc_jsn(baseline, followup, spacing_mm, layers, ax, band, refine, lsn_model)
            else:
                jsn, det = _poc_jsn(baseline, followup, spacing_mm, m, ax, band, refine)
        det["jsn_unflagged"] = jsn
        if on_doubt == "nan":
            jsn = torch.where(det["flags"] == 0, jsn, torch.full_like(jsn, float("nan")))
        return (jsn, det) if return_details else jsn
    if method == "learned":
        if model is None:
            raise ValueError("model: method='learned' needs a trained model (lsn_fast.tasks.jsn.train_jsn_model)")
        check_model(model)
        dev = model_device(model)
        model.eval()

        def run(a, b):
            y = model(a.to(dev), b.to(dev))
            if not isinstance(y, torch.Tensor) or y.numel() != a.shape[0]:
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ValueError(f"model: expected one JSN per pair, shape ({a.shape[0]},), got {got}")
            return y.float().to(baseline.device)

        with torch.no_grad():
            out = batched_apply(run, baseline, followup, batch_size=batch_size)
        if return_details:
            return out, {"flags": torch.zeros(out.shape[0], dtype=torch.int32, device=out.device)}
        return out
    raise ValueError(f"method: expected 'poc' or 'learned', got {method!r}")


def evaluate_jsn(pred_mm, true_mm) -> dict:
    """MAE, RMSE, bias, Pearson r, ICC(2,1) of JSN predictions (mm)."""
    return regression_metrics(pred_mm, true_mm)
