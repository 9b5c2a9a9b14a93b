"""Counter-based noise: Philox-4x32-10 in eager PyTorch (the reference every backend matches).

Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) is the
generator behind Triton's ``tl.randint4x``/``tl.randn`` and cuRAND's Philox. It maps a 128-bit
counter and a 64-bit key to four uint32 words; no state, so any sample of a stream can be
recomputed anywhere.

lsn_fast's keying (the contract all backends implement, see ``kernels/`` and ``csrc/``):

    key     = (seed & 0xffffffff, (seed >> 32) & 0xffffffff)
    counter = (pixel_index, sample_index & 0xffffffff, sample_index >> 32, stream)

with ``pixel_index = y * W + x`` and ``stream = 0`` for the detector chain. The four words become
uniforms ``u = ((r >> 8) + 0.5) * 2**-24`` (exact in float32, in (0, 1)) and the first two a
Box–Muller pair of independent standard normals ``z1 = ρ cos θ``, ``z2 = ρ sin θ`` with
``ρ = sqrt(-2 ln u0)``, ``θ = 2π u1``: z1 drives quantum noise, z2 electronic noise.

torch has no unsigned 32-bit multiply-high, so the product is formed from 16-bit limbs in int64
(every partial product < 2**49): exact on every device.
"""

from __future__ import annotations

import math

import torch

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF
TWO_PI = 2.0 * math.pi


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product of constant ``a`` and int64 tensor ``b`` (< 2**32)."""
    a_hi, a_lo = a >> 16, a & 0xFFFF
    b_hi, b_lo = b >> 16, b & 0xFFFF
    p0 = a_lo * b_lo
    mid = a_hi * b_lo + a_lo * b_hi + (p0 >> 16)
    hi = a_hi * b_hi + (mid >> 16)
    lo = ((mid & 0xFFFF) << 16) | (p0 & 0xFFFF)
    return hi & MASK32, lo


def philox4x32(c0, c1, c2, c3, k0, k1, rounds: int = 10):
    """Philox-4x32 on int64 tensors holding uint32 values (broadcastable). Returns 4 int64 tensors."""
    c0, c1, c2, c3 = (torch.as_tensor(c) if not isinstance(c, torch.Tensor) else c for c in (c0, c1, c2, c3))
    k0 = torch.as_tensor(k0, dtype=torch.int64, device=c0.device) if not isinstance(k0, torch.Tensor) else k0
    k1 = torch.as_tensor(k1, dtype=torch.int64, device=c0.device) if not isinstance(k1, torch.Tensor) else k1
    for r in range(rounds):
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if r + 1 < rounds:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def uint32_to_uniform(r: torch.Tensor) -> torch.Tensor:
    """uint32 (held in int64) -> float32 uniform in (0, 1): ``((r >> 8) + 0.5) * 2**-24``."""
    return ((r >> 8).to(torch.float32) + 0.5) * (2.0**-24)


def split_seed(seed: int) -> tuple[int, int]:
    """64-bit seed -> Philox key words (lo, hi). Accepts any Python int in [0, 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must lie in [0, 2**64), got {seed}")
    return seed & MASK32, (seed >> 32) & MASK32


def detector_normals(
    seed: int, sample_index: torch.Tensor, height: int, width: int, stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The detector chain's random numbers for a batch of images.

    Args:
        seed: 64-bit stream seed.
        sample_index: (B,) int64 global sample indices (>= 0).
        height, width: image size in px.
    Returns:
        ``(z1, z2, u2)``, each (B,H,W) float32: two independent standard normals and one uniform
        in (0, 1) per pixel, a pure function of (seed, sample_index, pixel).
    """
    k0, k1 = split_seed(seed)
    dev = sample_index.device
    pix = torch.arange(height * width, device=dev, dtype=torch.int64).view(1, height, width)
    s = sample_index.to(torch.int64).view(-1, 1, 1)
    c1 = (s & MASK32).expand(-1, height, width)
    c2 = ((s >> 32) & MASK32).expand(-1, height, width)
    c0 = pix.expand_as(c1)
    c3 = torch.full_like(c0, stream & MASK32)
    r0, r1, r2, _ = philox4x32(c0, c1, c2, c3, k0, k1)
    u0, u1, u2 = uint32_to_uniform(r0), uint32_to_uniform(r1), uint32_to_uniform(r2)
    rho = torch.sqrt(-2.0 * torch.log(u0))
    theta = TWO_PI * u1
    return rho * torch.cos(theta), rho * torch.sin(theta), u2
