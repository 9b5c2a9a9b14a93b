"""Detector model: the stages that turn attenuation into a CR/DR image (DESIGN.md §2).

    1. expected counts   q = n0 · exp(−A)
    2. scatter           q += scatter · G_{scatter_sigma_px} * q          (optional)
    3. quantum noise     Poisson(q), or its Gaussian form q + sqrt(q)·z1
    4. detector blur     G_{blur_sigma_px} * q  (after the noise, so the noise is correlated)
    5. electronic noise  q += electronic_sigma · z2
    6. output            y = −log(max(q, min_counts) / n0)  (attenuation), or q (counts)

``G_σ *`` is a normalized separable Gaussian with radius ceil(3σ) and edge-clamped borders.
z1, z2 come from Philox keyed by (seed, sample index, pixel), see :mod:`lsn_fast.philox`.

Defaults are a typical DR hand exposure at 0.1 mm pixels (~50 kVp, ~1 mAs): about 1e4 photons per
pixel in air (quantum-limited SNR ≈ 100 in air); an MTF of about 0.5 at 2.5 lp/mm
(σ ≈ 0.6 px); a few counts of electronic noise; scatter off (a finger is 1–2 cm thick, the
scatter-to-primary ratio without a grid is ~0.02–0.1: set ``scatter`` to model it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from lsn_fast.utils.validation import per_sample

NOISE_MODES = {"none": 0, "gaussian": 1, "poisson": 2}
OUTPUT_MODES = {"attenuation": 0, "counts": 1}
# Column order of Detector.params(); the kernels read this layout.
PARAM_COLUMNS = ("n0", "scatter", "scatter_sigma_px", "blur_sigma_px", "electronic_sigma")
# (lower bound, lower bound allowed, upper bound) per column: far beyond any detector, they keep
# the kernels' work finite (a blur radius is ceil(3σ) px) and every value inside float32.
PARAM_RANGES = {"n0": (0.0, False, 1e12), "scatter": (0.0, True, 100.0), "scatter_sigma_px": (0.0, False, 1000.0),
                "blur_sigma_px": (0.0, True, 1000.0), "electronic_sigma": (0.0, True, 1e6)}
# Below this mean count, Poisson noise is drawn exactly by inversion (one uniform, at most
# POISSON_INVERSION_TERMS terms); above it by the third-order Cornish–Fisher expansion of the
# Poisson quantile, rounded: k = floor(λ + sqrt(λ)·z + (z² − 1)/6 + 1/2).
POISSON_SMALL_LAMBDA = 12.0
POISSON_INVERSION_TERMS = 40


@dataclass
class Detector:
    """Detector chain parameters. Every numeric field is a float or a (B,) tensor (per sample).

    Args:
        n0: photons per pixel in air (unattenuated), in (0, 1e12]. Typical 1e3 (low dose) – 1e5.
        noise: ``"poisson"`` (default), ``"gaussian"`` (q + sqrt(q)·z) or ``"none"``.
        blur_sigma_px: detector blur (MTF) as a Gaussian σ in px, in [0, 1000].
        electronic_sigma: additive electronic noise σ in counts, in [0, 1e6].
        scatter: scatter-to-primary ratio, in [0, 100] (0 disables the stage).
        scatter_sigma_px: width σ of the scatter kernel in px, in (0, 1000].
        output: ``"attenuation"`` (y = −log(q/n0), bone bright) or ``"counts"``.
        min_counts: counts are clamped to at least this before the log, finite and > 0.

    The upper bounds are far beyond any detector; they keep the kernels' work finite (a blur
    kernel has radius ⌈3σ⌉ px, computed per pixel) and every value inside float32.
    """

    n0: float | torch.Tensor = 1.0e4
    noise: str = "poisson"
    blur_sigma_px: float | torch.Tensor = 0.6
    electronic_sigma: float | torch.Tensor = 2.0
    scatter: float | torch.Tensor = 0.0
    scatter_sigma_px: float | torch.Tensor = 25.0
    output: str = "attenuation"
    min_counts: float = 0.5

    def __post_init__(self):
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise: expected one of {sorted(NOISE_MODES)}, got {self.noise!r}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output: expected one of {sorted(OUTPUT_MODES)}, got {self.output!r}")
        if not (isinstance(self.min_counts, (int, float)) and not isinstance(self.min_counts, bool)
                and math.isfinite(self.min_counts) and self.min_counts > 0):
            raise ValueError(f"min_counts: must be a finite number > 0, got {self.min_counts!r}")
        for name in PARAM_COLUMNS:  # scalars fail here, at construction; tensors in params()
            if not isinstance(getattr(self, name), torch.Tensor):
                self._column(name, 1, torch.device("cpu"))

    @property
    def noise_mode(self) -> int:
        return NOISE_MODES[self.noise]

    @property
    def output_mode(self) -> int:
        return OUTPUT_MODES[self.output]

    def params(self, batch: int, device="cpu") -> torch.Tensor:
        """Per-sample numeric parameters as a (B, 5) float32 tensor, columns ``PARAM_COLUMNS``.

        Validates every value against the ranges above and names the field.
        """
        device = torch.device(device)
        return torch.stack([self._column(n, batch, device) for n in PARAM_COLUMNS], dim=1).contiguous()

    def _column(self, name: str, batch: int, device: torch.device) -> torch.Tensor:
        lo, lo_inclusive, hi = PARAM_RANGES[name]
        return per_sample(getattr(self, name), name, batch, device=device, min_value=lo,
                          min_inclusive=lo_inclusive, max_value=hi)

    def replace(self, **changes) -> "Detector":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw.update(changes)
        return Detector(**kw)
