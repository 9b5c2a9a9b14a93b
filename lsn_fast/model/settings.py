"""The training distribution shared by training, evaluation and the studies: seeded generators,
detector randomization, bone masks and the unseen phantom settings ("shifted", "ra") stage 2 is
measured on. Everything here is deterministic in its seed."""

from __future__ import annotations

import math

import torch

from lsn_fast.physics.detector import Detector
from lsn_fast.physics.layers import LayerStack
from lsn_fast.synthesis.compose import compose

MASK_THRESHOLD = 0.01  # bone mask = bone layer > this (dimensionless line integral)
DETECTOR_RANGES = {  # stage-1 randomization (issue 4)
    "n0": (2.0e3, 1.0e5),  # log-uniform
    "blur_sigma_px": (0.3, 1.2),
    "electronic_sigma": (0.0, 5.0),
    "scatter": (0.0, 0.1),
}


def mix_seed(*vals: int) -> int:
    """SplitMix64 hash of integers -> a 63-bit seed (stable across runs and platforms)."""
    x = 0x9E3779B97F4A7C15
    for v in vals:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x = z ^ (z >> 31)
    return x & 0x7FFFFFFFFFFFFFFF


def seeded_generator(*vals: int) -> torch.Generator:
    """A CPU torch.Generator seeded with :func:`mix_seed` of ``vals``."""
    return torch.Generator().manual_seed(mix_seed(*vals))


def uniform(g, n, lo, hi) -> torch.Tensor:
    """``n`` uniform draws in [lo, hi) from generator ``g``, (n,) float32."""
    return lo + (hi - lo) * torch.rand(n, generator=g)


def random_detector(batch: int, g: torch.Generator, ranges: dict | None = None) -> Detector:
    """A Poisson :class:`Detector` with per-sample parameters drawn from ``ranges``."""
    r = dict(DETECTOR_RANGES, **(ranges or {}))
    lo, hi = math.log(r["n0"][0]), math.log(r["n0"][1])
    return Detector(
        n0=torch.exp(uniform(g, batch, lo, hi)),
        noise="poisson",
        blur_sigma_px=uniform(g, batch, *r["blur_sigma_px"]),
        electronic_sigma=uniform(g, batch, *r["electronic_sigma"]),
        scatter=uniform(g, batch, *r["scatter"]),
    )


def bone_masks(layers: torch.Tensor, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """(B,3,H,W) layers -> (B,2,H,W) float masks of the upper and lower bone."""
    return (layers[:, 1:3] > threshold).to(torch.float32)


def stack_layers(layers: torch.Tensor, spacing_mm: float = 0.1, axis=None) -> LayerStack:
    """(B,3,H,W) soft/upper/lower -> a LayerStack (unvalidated: the callers made the layers)."""
    return LayerStack(layers[:, 0], layers[:, 1], layers[:, 2], spacing_mm, axis, validate=False)


SHIFTED_DETECTOR = {"blur_sigma_px": (0.8, 1.6), "n0": (3e3, 5e4)}
# Unseen settings: per-sample scale ranges of the bone and soft-tissue layers, tilt range (deg),
# detector ranges. "shifted": other bone density / soft thickness than stage 1 and a blurrier,
# lower-dose detector. "ra": what rheumatoid-arthritis hands add on top of that, periarticular
# osteopenia (bone attenuation ×0.45–0.65) and soft-tissue swelling (×1.3–1.7); the stage-1
# model's separation degrades there (measured: bone PSNR 36 -> 24 dB).
SETTINGS = {
    "shifted": {"bone": (0.8, 1.2), "soft": (0.9, 1.1), "tilt_deg": (-20.0, 20.0), "detector": SHIFTED_DETECTOR},
    "ra": {"bone": (0.45, 0.65), "soft": (1.3, 1.7), "tilt_deg": (-20.0, 20.0), "detector": SHIFTED_DETECTOR},
}


def check_setting(setting: str) -> None:
    """``ValueError`` unless ``setting`` names one of :data:`SETTINGS`."""
    if setting not in SETTINGS:
        raise ValueError(f"setting: expected one of {sorted(SETTINGS)}, got {setting!r}")


def shifted_setting(n: int, size: int = 256, seed: int = 777,
                    setting: str = "shifted") -> tuple[LayerStack, torch.Tensor, torch.Tensor]:
    """``n`` phantom radiographs of a setting stage 1 does not train on (``SETTINGS[setting]``).

    Returns:
        (true layers as a LayerStack (n,size,size), images (n,1,size,size) attenuation,
        bone masks (n,2,size,size) float {0,1}: what stage 2 is given).
    """
    return setting_sample(n, size, seed, setting)[:3]


def setting_sample(n: int, size: int = 256, seed: int = 777, setting: str = "shifted"):
    """:func:`shifted_setting` plus the phantoms' ``info`` dict (true ``jsw_mm`` etc., see
    :func:`lsn_fast.phantom.generate`, and ``detector``, the :class:`lsn_fast.Detector` that
    rendered the images): ``(truth, images, masks, info)``."""
    from lsn_fast.physics.phantom import generate

    check_setting(setting)
    spec = SETTINGS[setting]
    st, info = generate(n, size=size, seed=seed, tilt_deg=spec["tilt_deg"])
    g = seeded_generator(seed, 5)
    bs, ss = uniform(g, n, *spec["bone"]).view(n, 1, 1), uniform(g, n, *spec["soft"]).view(n, 1, 1)
    L = torch.stack([st.soft * ss, st.upper * bs, st.lower * bs], 1)
    truth = stack_layers(L, st.spacing_mm, st.axis)
    det = random_detector(n, g, spec["detector"])
    images = compose(truth, detector=det, seed=seed)
    return truth, images, bone_masks(L), {**info, "detector": det}

