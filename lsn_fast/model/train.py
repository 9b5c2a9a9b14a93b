"""Training the Layer Separation Network (issue 4, part 2).

Stage 1 — supervised, on pseudo-radiographs with known layers generated on the fly:
    phantoms (:func:`lsn_fast.phantom.generate`, a pool regenerated every ``refresh`` steps with
    seeds derived from the run seed) -> random crop around the joint, random horizontal flip and
    intensity scale -> detector chain (:func:`lsn_fast.compose`) with a randomized
    :class:`lsn_fast.Detector` per sample (n0 log-uniform 2e3–1e5, blur 0.3–1.2 px, electronic
    σ 0–5 counts, scatter-to-primary 0–0.1). Losses:

    * per-layer L1 + image-gradient L1 (finite differences) against the true layers,
    * bone-segmentation BCE on the seg head (masks: layer > ``MASK_THRESHOLD``),
    * Beer–Lambert reconstruction: the predicted layers composed noiselessly with
      :func:`lsn_fast.compose` against the clean attenuation (L1), and in the counts domain
      (``exp(−A)`` through a noiseless counts-output Detector, L1).
    * off by default (``--loss-weight NAME=W``): ``recon_rel``, the evaluation's relative-L2
      recomposition metric; ``lap``, L1 between the layers' Laplacians; ``recon_edge``,
      ``recon_rel`` restricted to the ±2 px band around the bone outlines
      (:func:`bone_edge_band`). The shipped weights use ``recon_rel`` and ``lap``; ``lap`` and
      ``recon_edge`` were measured without gain (``lsn_fast/weights/README.md``).

Stage 2 — radiographs without layer ground truth (a folder of images + bone masks):
    reconstruction against the input, segmentation supervision (+ no bone outside its mask),
    random-shift consistency (:func:`shift_consistency_loss`: open the joint by a random integer
    number of px with ``LayerStack.shifted``/``compose``, re-separate, the layers must come back
    moved by exactly that shift), and a small patch-GAN discriminator on the high-passed soft
    layer (soft tissue under the bones vs elsewhere; the LSN learns to make them
    indistinguishable, i.e. to leave no bone remnants in the soft layer).

Everything is deterministic given ``seed``: the data of step ``k`` depends only on
``(seed, k)``, so resuming from a checkpoint gives the same numbers as not stopping.
Checkpoints are safetensors (model, optimizer, discriminator) + a small JSON state; the
weights-only ``model.safetensors`` loads with :meth:`lsn_fast.LSN.pretrained(path)`.

CLI (wired by :mod:`lsn_fast.cli` as ``lsn-fast train-lsn`` / ``lsn-fast eval-lsn``)::

    lsn-fast train-lsn --stage 1 --model small --steps 2000 --crop 64 --batch 8 --out runs/s1
    lsn-fast train-lsn --stage 2 --data demo_s2/ --make-demo 64 --init runs/s1 --steps 500 --out runs/s2
    lsn-fast eval-lsn --weights runs/s1/model.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lsn_fast.synthesis.compose import compose
from lsn_fast.physics.detector import Detector
from lsn_fast.physics.layers import LayerStack
from lsn_fast.model.lsn import LSN, LSNConfig, load_weights, save_weights, with_refiner
from lsn_fast.utils.files import apply_umask, atomic_write, atomic_write_text
from lsn_fast.model.settings import (DETECTOR_RANGES, MASK_THRESHOLD, bone_masks, mix_seed, random_detector, seeded_generator,
                                     shifted_setting, stack_layers, uniform)

LOSS_SCALE = 10.0  # layers are ~0.1–0.6; scale L1 terms to O(0.1–1)
# Default weights of the loss terms (``--loss-weight NAME=W`` overrides them). The last three are
# off so that v1's recipe keeps its numbers; the shipped weights' later stages set recon_rel=1, lap=1.
STAGE1_LOSS_WEIGHTS = {"layer": 1.0, "grad": 1.0, "seg": 0.1, "recon": 1.0, "counts": 1.0, "recon_rel": 0.0, "lap": 0.0,
                       "recon_edge": 0.0}
STAGE2_LOSS_WEIGHTS = {"recon": 1.0, "counts": 1.0, "seg": 0.1, "outside": 1.0, "shift": 1.0, "adv": 0.01,
                       "anchor_bone": 0.0}
RECON_TARGETS = ("input", "teacher")  # stage 2: what S+U+L is reconstructed towards
TRAIN_ONLY = ("all", "refine")  # which parameters train (TrainConfig.train_only)

__all__ = [
    "TrainConfig", "Trainer", "train", "PhantomPool", "random_detector", "bone_masks", "bone_edge_band",
    "stage1_losses", "stage2_losses", "shift_consistency_loss", "SoftDiscriminator",
    "load_stage2_folder", "write_demo_stage2_data", "add_train_arguments", "run_train",
    "MASK_THRESHOLD", "DETECTOR_RANGES", "cpu_has_native_bf16",
]


# ------------------------------------------------------------------------------ utilities
def _finite_pair(v) -> bool:
    """Whether ``v`` is a (lo, hi) pair of finite numbers (the range options' shared shape check)."""
    return len(v) == 2 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)


def _grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    return dy.abs().mean() + dx.abs().mean()


def _lap_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean |Δa − Δb| with the 5-point Laplacian on interior pixels: the fine texture (the
    highest spatial frequencies), which L1 on values and first differences lets smooth away."""
    def lap(t):
        return t[..., :-2, 1:-1] + t[..., 2:, 1:-1] + t[..., 1:-1, :-2] + t[..., 1:-1, 2:] - 4 * t[..., 1:-1, 1:-1]
    return (lap(a) - lap(b)).abs().mean()


def bone_edge_band(layers: torch.Tensor, radius_px: int = 2, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """(B,3,H,W) true layers -> (B,1,H,W) float mask of the pixels within ``radius_px`` of a bone
    outline (either bone's mask dilated minus eroded by a (2r+1)² square).

    That band holds a third of v6's recomposition error on 5 % of the pixels
    (``lab/2026-12-02-lsn-systematic-error/``)."""
    m = bone_masks(layers, threshold)
    k = 2 * radius_px + 1
    dil = F.max_pool2d(m, k, stride=1, padding=radius_px)
    ero = -F.max_pool2d(-m, k, stride=1, padding=radius_px)
    return (dil - ero).amax(1, keepdim=True)


_COUNTS = Detector(n0=1.0, noise="none", blur_sigma_px=0.0, electronic_sigma=0.0, scatter=0.0, output="counts")


def recompose(layers: torch.Tensor, counts: bool = False) -> torch.Tensor:
    """Noiseless Beer–Lambert recomposition of (B,3,H,W) layers with :func:`lsn_fast.compose`:
    the attenuation ``A = S + U + L`` or the normalized counts ``exp(−A)``, (B,1,H,W)."""
    st = stack_layers(layers.float(), axis=(-1.0, 0.0))
    return compose(st, detector=_COUNTS if counts else None)


AMP_MODES = ("auto", "bf16", "off")


def _autocast(device: torch.device, amp: str = "auto"):
    """bf16 autocast for the forward pass: "auto" = on CUDA only; "bf16" = also on the CPU (oneDNN
    runs bf16 convolutions on AMX / AVX512-BF16 where the CPU has them, about 1.4-1.8x per core
    on a Sapphire Rapids Xeon, measured on the shipped model); "off" = float32 everywhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp != "off")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AMX tiles or AVX512-BF16). Without them
    oneDNN emulates bf16, and ``amp="bf16"`` is far slower than float32: measured on the shipped
    model at 256 px, batch 1, 1 thread, on an AVX2-only AMD EPYC: ~20 s per step against 0.77 s."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    probes = [f for f in probes if f is not None]
    if not probes:  # an older torch without the probes: assume yes rather than warn wrongly
        return True
    return any(bool(f()) for f in probes)


# ------------------------------------------------------------------------------ stage 1 data
class PhantomPool:
    """A pool of phantoms, regenerated every ``refresh`` steps; crops drawn per step.

    Block ``b = step // refresh`` holds ``generate(pool_size, size, seed=mix(seed, b))`` so the
    data of any step depends only on ``(seed, step)``.
    """

    def __init__(self, seed: int, pool_size: int = 64, size: int = 256, refresh: int = 200,
                 tilt_deg=(-10.0, 10.0), spacing_mm: float = 0.1):
        self.seed, self.pool_size, self.size, self.refresh = seed, pool_size, size, max(1, refresh)
        self.tilt_deg, self.spacing_mm = tilt_deg, spacing_mm
        self._block, self._layers, self._axis = None, None, None

    def _load(self, block: int):
        if self._block != block:
            from lsn_fast.physics.phantom import generate

            st, _ = generate(self.pool_size, size=self.size, spacing_mm=self.spacing_mm,
                             seed=mix_seed(self.seed, block, 1) % (2**62), tilt_deg=self.tilt_deg)
            self._layers = torch.stack([st.soft, st.upper, st.lower], 1).float()
            self._axis = st.axis.float()
            self._block = block

    def batch(self, step: int, batch: int, crop: int, g: torch.Generator, scale=(0.9, 1.1),
              bone_scale=(1.0, 1.0), soft_scale=(1.0, 1.0)):
        """(layers (B,3,crop,crop), axis (B,2)) for this step.

        ``scale`` multiplies all layers of a sample (dose-independent intensity); ``bone_scale`` /
        ``soft_scale`` multiply the bone / soft-tissue layers on top (other bone densities and
        soft-tissue thicknesses than the phantom's tabulated μ), each uniform per sample. The
        per-layer draws happen only when a range is not (1, 1), so default runs keep their data."""
        self._load(step // self.refresh)
        S = self.size
        c = min(crop, S)
        idx = torch.randint(0, self.pool_size, (batch,), generator=g)
        j = min((S - c) // 2, c)  # around the joint, reaching the finger's edges and the air
        oy = (S - c) // 2 + torch.randint(-j, j + 1, (batch,), generator=g)
        ox = (S - c) // 2 + torch.randint(-j, j + 1, (batch,), generator=g)
        flip = torch.rand(batch, generator=g) < 0.5
        sc = uniform(g, batch, *scale)
        per_layer = torch.ones(batch, 3, 1, 1)
        if tuple(bone_scale) != (1.0, 1.0) or tuple(soft_scale) != (1.0, 1.0):
            per_layer[:, 0, 0, 0] = uniform(g, batch, *soft_scale)
            per_layer[:, 1:, 0, 0] = uniform(g, batch, *bone_scale).view(batch, 1)
        out, axes = [], []
        for b in range(batch):
            L = self._layers[idx[b], :, oy[b]:oy[b] + c, ox[b]:ox[b] + c]
            a = self._axis[idx[b]].clone()
            if flip[b]:
                L, a[1] = L.flip(-1), -a[1]
            out.append(L * (sc[b] * per_layer[b]))
            axes.append(a)
        return torch.stack(out), torch.stack(axes)


def stage1_batch(pool: PhantomPool, step: int, cfg: "TrainConfig", device) -> dict:
    """One stage-1 batch from ``pool``: image (B,1,c,c), layers (B,3,c,c), axis (B,2), with
    ``c = min(cfg.crop, pool.size)``."""
    g = seeded_generator(cfg.seed, step, 2)
    layers, axis = pool.batch(step, cfg.batch, cfg.crop, g, bone_scale=cfg.bone_scale, soft_scale=cfg.soft_scale)
    det = random_detector(cfg.batch, g, cfg.detector_ranges())
    st = stack_layers(layers, pool.spacing_mm, axis)
    image = compose(st, detector=det, seed=mix_seed(cfg.seed, step, 3))
    return {"image": image.to(device), "layers": layers.to(device), "axis": axis.to(device)}


def stage1_losses(model: LSN, batch: dict, weights: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Supervised losses; returns (total, {name: float})."""
    w = {**STAGE1_LOSS_WEIGHTS, **(weights or {})}
    out = model(batch["image"], validate=False)
    P, T = out.layers, batch["layers"]
    clean = T.sum(1, keepdim=True)
    err = recompose(P) - clean
    nrm = lambda t: t.flatten(1).norm(dim=1)  # noqa: E731
    clean_norm = nrm(clean).clamp_min(1e-6)
    terms = {
        "layer": LOSS_SCALE * (P - T).abs().mean(),
        "grad": LOSS_SCALE * _grad_l1(P, T),
        "seg": F.binary_cross_entropy_with_logits(out.seg_logits, bone_masks(T)),
        "recon": LOSS_SCALE * err.abs().mean(),
        "counts": LOSS_SCALE * (recompose(P, counts=True) - torch.exp(-clean)).abs().mean(),
        # the evaluation's recomposition metric itself (relative L2, so edges weigh more than in the L1 terms)
        "recon_rel": LOSS_SCALE * (nrm(err) / clean_norm).mean(),
        # the layers' fine texture (off by default; what the recomposition error is mostly made of)
        "lap": LOSS_SCALE * _lap_l1(P, T),
        # recon_rel's numerator restricted to the bone outlines (off by default): extra weight
        # where the shipped weights' systematic error sits
        "recon_edge": LOSS_SCALE * (nrm(bone_edge_band(T) * err) / clean_norm).mean(),
    }
    total = sum(w[k] * v for k, v in terms.items() if w[k])
    return total, {k: float(v.detach()) for k, v in terms.items()}


# ------------------------------------------------------------------------------ stage 2
def shift_consistency_loss(
    layers: torch.Tensor,
    resep: Callable[[torch.Tensor], torch.Tensor],
    shift_px,
    axis=(-1.0, 0.0),
    spacing_mm: float = 0.1,
) -> torch.Tensor:
    """Random-shift consistency (stage 2).

    Move the upper bone of ``layers`` (B,3,H,W) by ``shift_px`` along ``axis`` with
    :meth:`LayerStack.shifted`, re-compose the image with :func:`lsn_fast.compose` (noiseless),
    re-separate it with ``resep`` (image (B,1,H,W) -> layers (B,3,H,W)) and return the mean L1
    (× ``LOSS_SCALE``) between the re-separated and the shifted layers. The target is detached.
    Zero for an exactly shift-equivariant separator.
    """
    st = stack_layers(layers.detach().float(), spacing_mm, axis)
    moved = st.shifted(shift_px)
    target = torch.stack([moved.soft, moved.upper, moved.lower], 1)
    image = compose(st, shift_px=shift_px)
    return LOSS_SCALE * (resep(image) - target).abs().mean()


class SoftDiscriminator(nn.Module):
    """Patch discriminator on the soft layer's high-pass (soft − 9×9 local mean).

    Output logits (B,1,H/4,W/4): "this patch of the soft layer lies under a bone".
    """

    def __init__(self, ch: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.GroupNorm(4, 2 * ch), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 1, 3, 1, 1),
        )

    def forward(self, soft: torch.Tensor) -> torch.Tensor:
        hp = soft - F.avg_pool2d(soft, 9, 1, 4, count_include_pad=False)
        return self.net(hp * LOSS_SCALE * 10.0)


def _patch_labels(masks: torch.Tensor, image: torch.Tensor):
    under = (F.avg_pool2d(masks.amax(1, keepdim=True), 4) > 0.5).float()
    tissue = (F.avg_pool2d((image > 0.05).float(), 4) > 0.5).float()
    return under, tissue


def stage2_losses(model: LSN, disc: SoftDiscriminator | None, batch: dict, g: torch.Generator,
                  max_shift: int = 4, weights: dict | None = None, *, teacher: LSN | None = None,
                  recon_target: str = "input", anchor: float = 0.0) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    """Losses without layer ground truth. Returns (generator total, terms, soft layer for the
    discriminator step or None).

    ``recon_target="input"`` reconstructs towards the observed image (its noise and scatter
    included: measured to undo stage 1's denoising, see lsn_fast/stage2_transfer.py);
    ``"teacher"`` towards the frozen ``teacher``'s denoised image. ``anchor > 0`` adds an L1 term
    to the teacher's layers.
    """
    w = {**STAGE2_LOSS_WEIGHTS, **(weights or {})}
    x, masks = batch["image"], batch["masks"]
    out = model(x, validate=False)
    P = out.layers
    B = x.shape[0]
    shift = torch.randint(1, max_shift + 1, (B,), generator=g).float().to(x.device)
    target = x
    t_out = None
    if teacher is not None and (recon_target == "teacher" or anchor > 0 or w["anchor_bone"] > 0):
        with torch.no_grad():
            t_out = teacher(x, validate=False)
        if recon_target == "teacher":
            target = t_out.denoised.to(x.dtype)
    elif recon_target == "teacher" or anchor > 0 or w["anchor_bone"] > 0:
        raise ValueError("teacher: recon_target='teacher', anchor > 0 and anchor_bone > 0 need the frozen initial model")
    terms = {
        "recon": LOSS_SCALE * (recompose(P) - target).abs().mean(),
        "counts": LOSS_SCALE * (recompose(P, counts=True) - torch.exp(-target)).abs().mean(),
        "seg": F.binary_cross_entropy_with_logits(out.seg_logits, masks),
        "outside": LOSS_SCALE * (P[:, 1:3] * (1.0 - masks)).mean(),
        "shift": shift_consistency_loss(P, lambda im: model(im, validate=False).layers, shift),
    }
    if anchor > 0:
        terms["anchor"] = LOSS_SCALE * (P - t_out.layers.to(P.dtype)).abs().mean()
        w["anchor"] = float(anchor)
    if w["anchor_bone"] > 0:  # the bone layers stay the initial model's; the soft layer takes what is new
        terms["anchor_bone"] = LOSS_SCALE * (P[:, 1:3] - t_out.layers[:, 1:3].to(P.dtype)).abs().mean()
    soft = P[:, 0:1]
    if disc is not None:
        under, tissue = _patch_labels(masks, x)
        logits = disc(soft)
        n = (under * tissue).sum().clamp_min(1.0)
        # generator: make the soft tissue under the bones look like soft tissue elsewhere
        terms["adv"] = (F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none") * under * tissue).sum() / n
    total = sum(w[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}, soft.detach()


def discriminator_loss(disc: SoftDiscriminator, soft: torch.Tensor, masks: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    under, tissue = _patch_labels(masks, image)
    logits = disc(soft)
    l = F.binary_cross_entropy_with_logits(logits, under, reduction="none") * tissue
    return l.sum() / tissue.sum().clamp_min(1.0)


def _read_image_file(path: str) -> torch.Tensor:
    if path.endswith(".npy"):
        import numpy as np

        return torch.from_numpy(np.load(path, allow_pickle=False).astype("float32"))
    from PIL import Image
    import numpy as np

    with Image.open(path) as im:
        a = np.asarray(im)
    return torch.from_numpy(a.astype("float32"))


def load_stage2_folder(path: str, png_scale: float = 4.0 / 65535.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,1,H,W) float32 attenuation and bone masks (N,2,H,W) from a folder.

    Accepted: ``*.safetensors`` with ``images`` (N,1,H,W)/(N,H,W)/(H,W) and ``masks``
    (N,2,H,W)/(2,H,W); or pairs ``X.npy`` + ``X_mask.npy`` / ``X.png`` + ``X_mask.png`` where the
    mask is (2,H,W) (or (H,W,2)) upper/lower, or a (H,W) label map (1 upper, 2 lower). PNG images
    hold attenuation × 1/``png_scale`` (16-bit: 0–65535 ↦ 0–4). All images must share H, W.
    """
    if not os.path.isdir(path):
        raise ValueError(f"data: not a directory: {path}")
    imgs, masks = [], []
    for f in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        from safetensors.torch import load_file

        d = load_file(f)
        if "images" not in d or "masks" not in d:
            raise ValueError(f"data: {f} lacks 'images' and 'masks' tensors")
        im, m = d["images"].float(), d["masks"].float()
        im = im.reshape(-1, 1, *im.shape[-2:])
        m = m.reshape(-1, 2, *m.shape[-2:])
        if im.shape[0] != m.shape[0]:
            raise ValueError(f"data: {f}: {im.shape[0]} images but {m.shape[0]} masks")
        imgs.append(im), masks.append(m)
    for ext in (".npy", ".png"):
        for f in sorted(glob.glob(os.path.join(path, "*" + ext))):
            if f.endswith("_mask" + ext):
                continue
            mf = f[: -len(ext)] + "_mask" + ext
            if not os.path.isfile(mf):
                raise ValueError(f"data: {f} has no mask file {os.path.basename(mf)}")
            im = _read_image_file(f)
            if ext == ".png":
                im = im * png_scale
            m = _read_image_file(mf)
            if m.ndim == 2:
                m = torch.stack([m == 1, m == 2]).float()
            elif m.ndim == 3 and m.shape[-1] == 2:
                m = m.permute(2, 0, 1)
            imgs.append(im.reshape(1, 1, *im.shape[-2:])), masks.append((m > 0).float().reshape(1, 2, *m.shape[-2:]))
    if not imgs:
        raise ValueError(f"data: no .safetensors, .npy or .png images in {path}")
    shapes = {tuple(t.shape[-2:]) for t in imgs}
    if len(shapes) != 1:
        raise ValueError(f"data: images have different sizes {sorted(shapes)}")
    images, masks_t = torch.cat(imgs), torch.cat(masks)
    if not bool(torch.isfinite(images).all()):
        raise ValueError("data: images contain NaN or Inf")
    return images, masks_t


def write_demo_stage2_data(out_dir: str, n: int = 64, size: int = 256, seed: int = 777, setting: str = "shifted") -> str:
    """Demo "radiographs" for stage 2: phantoms from a *different* setting than stage 1
    (:func:`lsn_fast.stage2_transfer.shifted_setting`; "shifted": tilt ±20°, bone μ scaled
    ×0.8–1.2, soft ×0.9–1.1, stronger blur 0.8–1.6 px, n0 3e3–5e4; "ra": that with osteopenic
    bone ×0.45–0.65 and swollen soft tissue ×1.3–1.7) with masks from their true layers; written
    to ``out_dir/demo.safetensors``."""
    from safetensors.torch import save_file


    os.makedirs(out_dir, exist_ok=True)
    _, images, masks = shifted_setting(n, size, seed, setting)
    p = os.path.join(out_dir, "demo.safetensors")
    save_file({"images": images.contiguous(), "masks": masks.contiguous()}, p,
              metadata={"format": "lsn_fast.stage2", "seed": str(seed), "setting": setting})
    apply_umask(p)  # safetensors writes 0600
    return p


def stage2_batch(images: torch.Tensor, masks: torch.Tensor, step: int, cfg: "TrainConfig", device) -> tuple[dict, torch.Generator]:
    g = seeded_generator(cfg.seed, step, 4)
    N, _, H, W = images.shape
    c = min(cfg.crop, H, W)
    c -= c % 16
    idx = torch.randint(0, N, (cfg.batch,), generator=g)
    jy, jx = min((H - c) // 2, c // 4), min((W - c) // 2, c // 4)
    oy = (H - c) // 2 + torch.randint(-jy, jy + 1, (cfg.batch,), generator=g)
    ox = (W - c) // 2 + torch.randint(-jx, jx + 1, (cfg.batch,), generator=g)
    im = torch.stack([images[i, :, y:y + c, x:x + c] for i, y, x in zip(idx, oy, ox)])
    m = torch.stack([masks[i, :, y:y + c, x:x + c] for i, y, x in zip(idx, oy, ox)])
    return {"image": im.to(device), "masks": m.to(device)}, g


# ------------------------------------------------------------------------------ trainer
@dataclass
class TrainConfig:
    """Options of a training run (the CLI flags map 1:1)."""

    stage: int = 1
    steps: int = 1000
    crop: int = 64
    batch: int = 8
    lr: float = 2e-3
    seed: int = 0
    out: str | None = None
    resume: bool = False
    model: str = "tiny"
    data: str | None = None
    init: str | None = None
    pool: int = 64
    phantom_size: int = 256
    refresh: int = 200
    ckpt_every: int = 200
    warmup: int = 50
    max_shift: int = 4
    device: str | None = None
    progress: bool = True
    ema: float = 0.0  # EMA decay of the weights (0: off); model.safetensors then holds the EMA weights
    log_every: int = 0  # append every N-th step record to ``out/log.jsonl`` (0: off)
    # stage 2: what S+U+L is reconstructed towards: "input" (the observed image, noise and scatter
    # included) or "teacher" (the frozen initial model's denoised image); and the weight of an L1
    # anchor of the layers to the teacher's layers (0: off)
    recon_target: str = "teacher"  # "input" measured to undo stage 1's denoising on noisy data
    anchor: float = 0.0
    # stage 2: every K-th step is a stage-1 phantom step (layer supervision keeps the split of a
    # model adapting to radiographs without layers; 0: off)
    mix_stage1: int = 0
    loss_weights: dict = dataclasses.field(default_factory=dict)  # overrides of STAGE{1,2}_LOSS_WEIGHTS
    # stage 1: per-sample multipliers of the bone / soft-tissue layers (attenuation randomization)
    bone_scale: tuple = (1.0, 1.0)
    soft_scale: tuple = (1.0, 1.0)
    # stage 1: the scatter-to-primary range of the random detector (None: DETECTOR_RANGES' 0–0.1);
    # the same uniform draws are scaled, so the other detector parameters are unchanged
    scatter: tuple | None = None
    # stage 1: the dose range (photons per pixel in air, drawn log-uniform; None: DETECTOR_RANGES'
    # 2e3–1e5). Same uniform draws, remapped, so the other detector parameters are unchanged
    n0: tuple | None = None
    # a full-resolution DenoiseRefiner (0: none; added to an --init model that lacks one) and
    # which parameters train: "all", or "refine" (the rest frozen: sharpen a trained model's D)
    refine_channels: int = 0
    refine_layers: int = 6
    train_only: str = "all"
    # bf16 autocast: "auto" (CUDA only), "bf16" (CUDA and CPU), "off"; and whether the head and
    # the refiner then stay float32 (LSN.set_float32_tail)
    amp: str = "auto"
    float32_tail: bool = False
    # stage 1: every alt_every-th step draws whole phantoms of alt_phantom_size px (0: off) from a
    # second pool, cropped to min(crop, alt_phantom_size). Small fields of view are other anatomy
    # (the phantom narrows the finger below 24 mm), and a model trained on 256 px only separates
    # 128 px crops 3-4x worse; this keeps both sizes in the training data
    alt_phantom_size: int = 0
    alt_every: int = 2

    def detector_ranges(self) -> dict:
        """Stage 1's overrides of :data:`DETECTOR_RANGES` (``scatter``, ``n0``)."""
        r = {}
        if self.scatter is not None:
            r["scatter"] = tuple(self.scatter)
        if self.n0 is not None:
            r["n0"] = tuple(float(x) for x in self.n0)
        return r

    def validate(self):
        if self.stage not in (1, 2):
            raise ValueError(f"stage: expected 1 or 2, got {self.stage}")
        for k in ("steps", "batch", "pool", "refresh", "ckpt_every"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k}: must be >= 1, got {getattr(self, k)}")
        if self.crop < 16 or self.crop % 16:
            raise ValueError(f"crop: must be a multiple of 16 and >= 16, got {self.crop}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.recon_target not in RECON_TARGETS:
            raise ValueError(f"recon_target: expected 'input' or 'teacher', got {self.recon_target!r}")
        if not float(self.anchor) >= 0.0:
            raise ValueError(f"anchor: must be >= 0, got {self.anchor}")
        if not (isinstance(self.mix_stage1, int) and self.mix_stage1 >= 0) or (self.mix_stage1 and self.stage != 2):
            raise ValueError(f"mix_stage1: an int >= 0, for stage 2 only; got {self.mix_stage1!r} (stage {self.stage})")
        if self.stage == 2 and not self.data:
            raise ValueError("data: stage 2 needs --data DIR (images + bone masks; --make-demo N writes a demo set)")
        if self.resume and not self.out:
            raise ValueError("resume: needs --out DIR holding the checkpoint")
        if not 0.0 <= float(self.ema) < 1.0:
            raise ValueError(f"ema: must be in [0, 1), got {self.ema}")
        if int(self.log_every) < 0:
            raise ValueError(f"log_every: must be >= 0, got {self.log_every}")
        for k in ("bone_scale", "soft_scale"):
            v = getattr(self, k)
            if not (_finite_pair(v) and 0 < v[0] <= v[1]):
                raise ValueError(f"{k}: expected (lo, hi) with 0 < lo <= hi, got {v!r}")
        if self.scatter is not None:
            v = self.scatter
            if not (_finite_pair(v) and 0 <= v[0] <= v[1] < 1):
                raise ValueError(f"scatter: expected (lo, hi) with 0 <= lo <= hi < 1, got {v!r}")
        if self.n0 is not None:
            v = self.n0
            if not (_finite_pair(v) and 0 < v[0] <= v[1] <= 1e12):
                raise ValueError(f"n0: expected (lo, hi) photons per pixel with 0 < lo <= hi <= 1e12, got {v!r}")
        if int(self.refine_channels) < 0 or int(self.refine_layers) < 2:
            raise ValueError(f"refine_channels: must be >= 0 (and refine_layers >= 2), got {self.refine_channels}, {self.refine_layers}")
        if self.train_only not in TRAIN_ONLY:
            raise ValueError(f"train_only: expected one of {TRAIN_ONLY}, got {self.train_only!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp: expected one of {AMP_MODES}, got {self.amp!r}")
        known = STAGE1_LOSS_WEIGHTS if self.stage == 1 else STAGE2_LOSS_WEIGHTS
        for k, v in dict(self.loss_weights).items():
            if k not in known:
                raise ValueError(f"loss_weights: stage {self.stage} has no loss term {k!r}; terms: {sorted(known)}")
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"loss_weights: weight of {k!r} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.alt_phantom_size, int) and (self.alt_phantom_size == 0
                or (self.alt_phantom_size >= 32 and self.alt_phantom_size % 16 == 0))):
            raise ValueError(f"alt_phantom_size: must be 0 (off) or a multiple of 16 >= 32, got {self.alt_phantom_size!r}")
        if not (isinstance(self.alt_every, int) and self.alt_every >= 1):
            raise ValueError(f"alt_every: must be an int >= 1, got {self.alt_every!r}")
        if self.alt_phantom_size and self.stage != 1:
            raise ValueError("alt_phantom_size: phantoms are stage 1 data; stage 2 trains on --data")
        LSNConfig.named(self.model)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


def _opt_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, list]:
    sd = opt.state_dict()
    t = {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            t[f"{prefix}.{i}.{k}"] = (v if isinstance(v, torch.Tensor) else torch.tensor(v)).detach().cpu().contiguous()
    return t, sd["param_groups"]


def _opt_load(opt: torch.optim.Optimizer, tensors: dict, prefix: str, groups: list, device) -> None:
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v if name == "step" else v.to(device)
    opt.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    """Holds the model, the optimizer(s) and the data of one run; ``step()`` advances by one."""

    def __init__(self, cfg: TrainConfig, model: LSN | None = None):
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.amp == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("amp: 'bf16' on a CPU without AMX or AVX512-BF16 is emulated and runs many times "
                          "slower than float32 (measured ~25x on an AVX2 CPU); use amp='off' (--amp off) here",
                          RuntimeWarning, stacklevel=2)
        torch.manual_seed(mix_seed(cfg.seed, 0))
        if model is None:
            if cfg.init:
                p = os.path.join(cfg.init, "model.safetensors") if os.path.isdir(cfg.init) else cfg.init
                model = load_weights(p)
            else:
                model = LSN(LSNConfig.named(cfg.model))
        if cfg.refine_channels:
            model = with_refiner(model, cfg.refine_channels, cfg.refine_layers, seed=mix_seed(cfg.seed, 5))
        self.model = model.to(self.device).train().set_float32_tail(cfg.float32_tail)
        params = list(self.model.parameters())
        if cfg.train_only == "refine":
            if self.model.refine is None:
                raise ValueError("train_only: 'refine' needs a model with a refiner (--refine-channels C)")
            for p in self.model.parameters():
                p.requires_grad_(False)
            params = list(self.model.refine.parameters())
            for p in params:
                p.requires_grad_(True)
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
        self.disc = self.dopt = None
        self.teacher = None
        if cfg.stage == 2:
            self.disc = SoftDiscriminator().to(self.device).train()
            self.dopt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.999))
            self.images, self.masks = load_stage2_folder(cfg.data)
            if min(self.images.shape[-2:]) < 16:
                raise ValueError("data: images must be at least 16x16 px")
            if (cfg.recon_target == "teacher" or cfg.anchor > 0
                    or {**STAGE2_LOSS_WEIGHTS, **cfg.loss_weights}["anchor_bone"] > 0):  # the frozen initial model
                import copy

                self.teacher = copy.deepcopy(self.model).eval()
                for p in self.teacher.parameters():
                    p.requires_grad_(False)
        if cfg.stage == 1 or cfg.mix_stage1:
            self.pool = PhantomPool(cfg.seed, cfg.pool, cfg.phantom_size, cfg.refresh)
        if cfg.stage == 1:
            # its own seed: other phantoms than the main pool's, not the same ones at another size
            self.alt_pool = (PhantomPool(mix_seed(cfg.seed, 17) % 2**62, cfg.pool, cfg.alt_phantom_size, cfg.refresh)
                             if cfg.alt_phantom_size else None)
        self.step_idx = 0
        self.history: list[dict] = []
        # exponential moving average of the weights (float32 copies), updated after every step
        self.ema = ({k: v.detach().clone().float() for k, v in self.model.state_dict().items()}
                    if cfg.ema > 0 else None)

    def _ema_update(self) -> None:
        # bias-corrected warm-up: the effective decay is min(ema, (1+k)/(10+k))
        d = min(self.cfg.ema, (1.0 + self.step_idx) / (10.0 + self.step_idx))
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                e = self.ema[k]
                if v.dtype.is_floating_point:
                    e.mul_(d).add_(v.detach().float(), alpha=1.0 - d)
                else:
                    e.copy_(v)

    def ema_model(self) -> LSN:
        """A copy of the model holding the EMA weights (the model itself if EMA is off)."""
        if self.ema is None:
            return self.model
        m = LSN(self.model.config)
        m.load_state_dict(self.ema)
        return m.eval()

    # ------------------------------------------------------------------ one step
    def step(self) -> dict:
        cfg, k = self.cfg, self.step_idx
        lr = _lr_at(k, cfg)
        for gr in self.opt.param_groups:
            gr["lr"] = lr
        self.model.train()
        phantom_step = cfg.stage == 1 or (cfg.mix_stage1 and k % cfg.mix_stage1 == cfg.mix_stage1 - 1)
        with _autocast(self.device, self.cfg.amp):
            if phantom_step:
                alt = cfg.stage == 1 and self.alt_pool is not None and k % cfg.alt_every == cfg.alt_every - 1
                batch = stage1_batch(self.alt_pool if alt else self.pool, k, cfg, self.device)
                loss, terms = stage1_losses(self.model, batch, None if cfg.stage == 2 else cfg.loss_weights)
                soft = None
            else:
                batch, g = stage2_batch(self.images, self.masks, k, cfg, self.device)
                loss, terms, soft = stage2_losses(self.model, self.disc, batch, g, cfg.max_shift, cfg.loss_weights,
                                                  teacher=self.teacher,
                                                  recon_target=cfg.recon_target, anchor=cfg.anchor)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.disc is not None:  # the generator step must not train the discriminator
            for p in self.disc.parameters():
                p.grad = None
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            self._ema_update()
        if self.disc is not None and soft is not None:
            with _autocast(self.device, self.cfg.amp):
                dl = discriminator_loss(self.disc, soft, batch["masks"], batch["image"])
            self.dopt.zero_grad(set_to_none=True)
            dl.backward()
            self.dopt.step()
            terms["disc"] = float(dl.detach())
        rec = {"step": k, "loss": float(loss.detach()), "lr": lr, "grad_norm": float(gn), **terms}
        if cfg.stage == 2 and cfg.mix_stage1:
            rec["phantom_step"] = bool(phantom_step)
        if cfg.stage == 1 and self.alt_pool is not None:  # the losses of the two sizes differ: say which
            rec["size"] = int(batch["image"].shape[-1])
        self.history.append(rec)
        self.step_idx += 1
        if cfg.log_every and cfg.out and k % cfg.log_every == 0:
            os.makedirs(cfg.out, exist_ok=True)
            with open(os.path.join(cfg.out, "log.jsonl"), "a") as f:
                f.write(json.dumps({**rec, "time": time.time()}) + "\n")
        return rec

    # ------------------------------------------------------------------ checkpoints
    def save(self, out: str | None = None) -> str:
        out = out or self.cfg.out
        os.makedirs(out, exist_ok=True)
        from safetensors.torch import save_file

        t = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            t.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema.items()})
        ot, groups = _opt_tensors(self.opt, "opt")
        t.update(ot)
        dgroups = None
        if self.disc is not None:
            t.update({f"disc.{k}": v.detach().cpu().contiguous() for k, v in self.disc.state_dict().items()})
            dt, dgroups = _opt_tensors(self.dopt, "dopt")
            t.update(dt)
        state = {
            "step": self.step_idx, "stage": self.cfg.stage, "seed": self.cfg.seed,
            "model_config": json.loads(self.model.config.to_json()),
            "train_config": dataclasses.asdict(self.cfg), "param_groups": groups, "disc_param_groups": dgroups,
            "last": self.history[-1] if self.history else None,
        }
        atomic_write(os.path.join(out, "ckpt.safetensors"),
                     lambda tmp: save_file(t, tmp, metadata={"format": "lsn_fast.train_ckpt", "state": json.dumps(state)}))
        atomic_write_text(os.path.join(out, "state.json"), json.dumps(state, indent=1))
        meta = {"train_step": str(self.step_idx), "train_stage": str(self.cfg.stage), "seed": str(self.cfg.seed)}
        if self.ema is not None:  # model.safetensors = EMA weights; the raw weights alongside
            save_weights(self.ema_model(), os.path.join(out, "model.safetensors"), {**meta, "ema": str(self.cfg.ema)})
            save_weights(self.model, os.path.join(out, "model_raw.safetensors"), meta)
        else:
            save_weights(self.model, os.path.join(out, "model.safetensors"), meta)
        return out

    def load(self, out: str | None = None) -> None:
        out = out or self.cfg.out
        p = os.path.join(out, "ckpt.safetensors")
        if not os.path.isfile(p):
            raise FileNotFoundError(f"resume: no checkpoint {p}")
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(p, framework="pt") as f:
            state = json.loads(f.metadata()["state"])
        if state["stage"] != self.cfg.stage:
            raise ValueError(f"resume: checkpoint is stage {state['stage']}, asked for stage {self.cfg.stage}")
        if LSNConfig.from_json(state["model_config"]) != self.model.config:
            raise ValueError("resume: checkpoint model config differs from --model")
        t = load_file(p)
        self.model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        if self.ema is not None:
            ema = {k[4:]: v.float() for k, v in t.items() if k.startswith("ema.")}
            if set(ema) != set(self.ema):
                raise ValueError("resume: checkpoint has no EMA weights but --ema is set (or vice versa)")
            self.ema = {k: v.to(self.device) for k, v in ema.items()}
        _opt_load(self.opt, t, "opt", state["param_groups"], self.device)
        if self.disc is not None:
            self.disc.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("disc.")})
            _opt_load(self.dopt, t, "dopt", state["disc_param_groups"], self.device)
        self.step_idx = int(state["step"])


def train(cfg: TrainConfig, model: LSN | None = None, max_seconds: float | None = None,
          stop_at: int | None = None) -> Trainer:
    """Run (or resume) training until ``cfg.steps`` (or ``max_seconds``, or step ``stop_at``);
    checkpoints to ``cfg.out`` every ``ckpt_every`` steps and at the end. Returns the :class:`Trainer`.

    ``stop_at`` ends the run at that step of the ``cfg.steps`` schedule (the learning rate keeps
    following the full schedule), so weights saved by a run that a wall-time limit cut off at
    step N are reproduced by one command with ``stop_at=N``."""
    if stop_at is not None and not (isinstance(stop_at, int) and not isinstance(stop_at, bool)
                                    and 1 <= stop_at <= cfg.steps):
        raise ValueError(f"stop_at: must be an int in [1, steps={cfg.steps}], got {stop_at!r}")
    end = cfg.steps if stop_at is None else stop_at
    tr = Trainer(cfg, model)
    if cfg.resume:
        tr.load()
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=end, initial=tr.step_idx, desc=f"LSN stage {cfg.stage}", unit="step", dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        while tr.step_idx < end:
            rec = tr.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", layer=f"{rec.get('layer', rec.get('recon', 0)):.4f}")
            if cfg.out and (tr.step_idx % cfg.ckpt_every == 0):
                tr.save()
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
    finally:
        if bar is not None:
            bar.close()
    if cfg.out:
        tr.save()
    return tr


# ------------------------------------------------------------------------------ CLI
def add_train_arguments(p) -> None:
    """Flags of ``lsn-fast train-lsn``."""
    p.add_argument("--stage", type=int, choices=(1, 2), default=1, help="1: phantoms with known layers; 2: radiographs + bone masks")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps (default 1000)")
    p.add_argument("--crop", type=int, default=64, help="training crop in px, multiple of 16 (64 on CPU, 256 on GPU)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/lsn", help="run directory (checkpoints, model.safetensors, state.json)")
    p.add_argument("--resume", action="store_true", help="continue from --out/ckpt.safetensors")
    p.add_argument("--model", choices=("tiny", "small", "default"), default="small")
    p.add_argument("--data", default=None, help="stage 2: folder of images + bone masks")
    p.add_argument("--make-demo", type=int, default=0, metavar="N", help="stage 2: first write N demo radiographs into --data")
    p.add_argument("--init", default=None, help="initial weights (a model.safetensors or a run directory)")
    p.add_argument("--pool", type=int, default=64, help="stage 1: phantoms per pool")
    p.add_argument("--phantom-size", type=int, default=256)
    p.add_argument("--refresh", type=int, default=200, help="stage 1: new phantom pool every N steps")
    p.add_argument("--alt-phantom-size", type=int, default=0, metavar="PX",
                   help="stage 1: every --alt-every-th step trains on whole phantoms of PX px from a second pool "
                        "(cropped to min(--crop, PX)), so the model also sees small fields of view (0: off)")
    p.add_argument("--alt-every", type=int, default=2, metavar="K", help="see --alt-phantom-size (default 2: every other step)")
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--warmup", type=int, default=50, help="linear learning-rate warm-up steps (then cosine to 0.1×lr)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this wall time")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop (and checkpoint) at this step of the --steps schedule; reproduces a run that "
                        "--max-minutes cut off at STEP")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--amp", choices=AMP_MODES, default="auto",
                   help="bf16 autocast: auto = on CUDA only (default); bf16 = on the CPU too (fast where the CPU has "
                        "AMX or AVX512-BF16; without them it is emulated and many times slower, and a warning says so; "
                        "the losses and the optimizer stay float32); off = float32")
    p.add_argument("--float32-tail", action="store_true",
                   help="with bf16 autocast, keep the head convolution and the refiner in float32 (the layers "
                        "that write the denoised image; LSN.set_float32_tail)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, e.g. 0.999 (0: off); "
                   "model.safetensors then holds the EMA weights, model_raw.safetensors the raw ones")
    p.add_argument("--log-every", type=int, default=0, help="append every N-th step's losses to OUT/log.jsonl (0: off)")
    p.add_argument("--bone-scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("LO", "HI"),
                   help="stage 1: multiply each sample's bone layers by U(LO, HI) (bone-density randomization; default 1 1 = off)")
    p.add_argument("--soft-scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("LO", "HI"),
                   help="stage 1: multiply each sample's soft-tissue layer by U(LO, HI) (thickness randomization; default off)")
    p.add_argument("--scatter", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="stage 1: scatter-to-primary range of the random detector (default 0 0.1)")
    p.add_argument("--n0", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="stage 1: dose range of the random detector, photons per pixel in air, log-uniform (default 2e3 1e5)")
    p.add_argument("--refine-channels", type=int, default=0, metavar="C",
                   help="add a full-resolution refiner of the denoised image, C channels wide (0: none; added to an "
                        "--init model that has none, or widened from a narrower one of the same depth; either way "
                        "the model's output starts unchanged)")
    p.add_argument("--refine-layers", type=int, default=6, metavar="L", help="the refiner's 3x3 convolutions (default 6)")
    p.add_argument("--train-only", choices=TRAIN_ONLY, default="all",
                   help="'refine': train only the refiner, the rest frozen (sharpen a trained model's denoised image)")
    add_loss_arguments(p, stages=(1, 2))


def add_loss_arguments(p, stages=(1, 2)) -> None:
    """The stage-2 reconstruction options and ``--loss-weight``, shared by ``train-lsn`` and
    ``experiment stage2-transfer``; the help lists the loss terms of ``stages``."""
    p.add_argument("--recon-target", choices=RECON_TARGETS, default="teacher",
                   help="stage 2: reconstruct S+U+L towards the frozen initial model's denoised image (default) or the "
                        "observed image ('input': fits its noise and scatter, measured to undo stage 1's denoising)")
    p.add_argument("--anchor", type=float, default=0.0, help="stage 2: weight of an L1 anchor to the initial model's layers (0: off). Measured on the 'ra' "
                        "setting: 0.3 keeps a model that is already good there from being pulled down (by the discriminator, whose "
                        "optimum is not the truth: lab/2026-12-01-stage2-disc-premise), but holds back "
                        "most of the gain from a weak start (lab/2026-12-01-stage2-ra)")
    terms = {1: STAGE1_LOSS_WEIGHTS, 2: STAGE2_LOSS_WEIGHTS}
    if 2 in stages and 1 in stages:
        p.add_argument("--mix-stage1", type=int, default=0, metavar="K",
                       help="stage 2: every K-th step is a stage-1 phantom step with known layers, which keeps the "
                            "layer split while the model adapts to the radiographs (0: off)")
    p.add_argument("--loss-weight", action="append", default=[], metavar="NAME=W", type=_loss_weight,
                   help="override one loss term's weight (repeatable). Terms and defaults: "
                        + "; ".join(f"stage {k}: " + ", ".join(f"{n}={v:g}" for n, v in terms[k].items()) for k in stages))


def _loss_weight(text: str) -> tuple[str, float]:
    name, sep, val = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(val)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT (e.g. recon_rel=1), got {text!r}") from None


def run_train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage == 2 and args.make_demo:
        if not args.data:
            raise ValueError("data: --make-demo needs --data DIR to write into")
        print("wrote", write_demo_stage2_data(args.data, n=args.make_demo, seed=mix_seed(args.seed, 9) % 2**31))
    cfg = TrainConfig(stage=args.stage, steps=args.steps, crop=args.crop, batch=args.batch, lr=args.lr, seed=args.seed,
                      out=args.out, resume=args.resume, model=args.model, data=args.data, init=args.init, pool=args.pool,
                      phantom_size=args.phantom_size, refresh=args.refresh, ckpt_every=args.ckpt_every, warmup=args.warmup,
                      device=args.device, progress=not args.no_progress, ema=args.ema, log_every=args.log_every,
                      recon_target=args.recon_target, anchor=args.anchor, loss_weights=dict(args.loss_weight),
                      mix_stage1=args.mix_stage1,
                      bone_scale=tuple(args.bone_scale), soft_scale=tuple(args.soft_scale),
                      scatter=None if args.scatter is None else tuple(args.scatter),
                      n0=None if args.n0 is None else tuple(args.n0),
                      refine_channels=args.refine_channels, refine_layers=args.refine_layers, train_only=args.train_only,
                      amp=args.amp, float32_tail=args.float32_tail, alt_phantom_size=args.alt_phantom_size,
                      alt_every=args.alt_every)
    t0 = time.perf_counter()
    tr = train(cfg, max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes, stop_at=args.stop_at)
    last = tr.history[-1] if tr.history else {}
    print(f"trained {tr.model.num_parameters} params to step {tr.step_idx} in {time.perf_counter() - t0:.0f} s; "
          f"last loss {last.get('loss', float('nan')):.4f}; wrote {os.path.join(cfg.out, 'model.safetensors')}")
    return 0

