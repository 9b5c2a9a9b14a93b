"""The Layer Separation Network (LSN) and :func:`separate` (DESIGN.md §4, issue 4).

One attenuation-domain radiograph crop ``y = −log(q/N0)`` (B,1,H,W) at 0.1 mm pixels goes in;
three non-negative layers (soft tissue, upper bone, lower bone) come out, with the Beer–Lambert
recomposition constraint built into the parametrization:

    D        = relu(y + r)                    denoised attenuation, >= 0 (r: predicted residual)
    p        = softmax(z)  over 3 channels    per-pixel layer fractions, >= 0, sum to 1
    layers_k = D · p_k                        so  soft + upper + lower == D  (float rounding only)

so the separated layers always add up to the network's own denoised image and are never
negative. With ``config.refine_channels > 0`` a small full-resolution CNN (:class:`DenoiseRefiner`)
corrects the denoised image before the split, ``D = relu(D0 + R([y, D0, p]))`` with
``D0 = relu(y + r)``; the fractions p and the identity ``soft + upper + lower == D`` are unchanged. Two extra output channels are bone-segmentation logits (upper, lower) used for
supervision (masks are "layer > small threshold").

Architecture: a U-Net with ``depth`` (default 4) stride-2 downsamplings, GroupNorm/SiLU residual
blocks, skip connections by concatenation, and a self-attention bottleneck over the 1/16
resolution tokens (multi-head ``F.scaled_dot_product_attention``) with 2-D rotary positional
encoding (RoPE: the attention logits depend only on the *relative* token offsets, so it works for
any input size and keeps the network translation equivariant up to the stride).

Weights are stored as safetensors only; the config is in the file's metadata as JSON
(``metadata["lsn_config"]``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lsn_fast.utils.files import atomic_write
from lsn_fast.utils.validation import check_positive_float, check_tensor
from lsn_fast.physics.layers import LayerStack

NOMINAL_SPACING_MM = 0.1
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")  # lsn_fast/weights
DEFAULT_WEIGHTS = os.path.join(WEIGHTS_DIR, "lsn_default.safetensors")
SMALL_FOV_WEIGHTS = os.path.join(WEIGHTS_DIR, "lsn_small_fov.safetensors")
REAL_S2_WEIGHTS = os.path.join(WEIGHTS_DIR, "lsn_real_s2.safetensors")
# The shipped weight files by name (model card: lsn_fast/weights/README.md). "default" is tuned
# on 256 px (25.6 mm) fields of view; "small-fov" also trained on whole 128 px (12.8 mm) phantoms,
# on which the default separates 3-4x less accurately; "real-s2" is the default after stage 2 on
# crops of 6 real hand radiographs (experimental: recomposition on real crops 10-13 % -> 2.4-2.7 %,
# phantoms 44.5 -> 36.5 dB bone PSNR; lab/2026-12-08-stage2-real/).
PRETRAINED = {"default": DEFAULT_WEIGHTS, "small-fov": SMALL_FOV_WEIGHTS, "real-s2": REAL_S2_WEIGHTS}
TRAIN_COMMAND = (
    "lsn-fast train-lsn --stage 1 --model small --steps 30000 --crop 256 --batch 1 --lr 1e-3 --warmup 300 "
    "--seed 0 --pool 64 --refresh 400 --ema 0.999 --log-every 10 --ckpt-every 1000 --max-minutes 96 --threads 1 "
    "--out runs/lsn_s1 && cp runs/lsn_s1/model.safetensors lsn_fast/weights/lsn_default.safetensors"
)

__all__ = ["LSNConfig", "LSN", "LSNOutput", "SeparationQuality", "QUALITY_LIMITS", "CONFIG_BOUNDS", "MAX_PARAMETERS", "DenoiseRefiner", "with_refiner", "separate", "save_weights", "load_weights",
           "DEFAULT_WEIGHTS", "SMALL_FOV_WEIGHTS", "REAL_S2_WEIGHTS", "PRETRAINED", "weights_path"]


def weights_path(path: str | os.PathLike | None = None) -> str | os.PathLike:
    """The file behind ``path``: None -> the default weights, a :data:`PRETRAINED` name -> its
    shipped file, anything else unchanged (a path)."""
    if path is None:
        return DEFAULT_WEIGHTS
    return PRETRAINED.get(path, path) if isinstance(path, str) else path


# ------------------------------------------------------------------------------ config
#: Allowed range of each config field read from a weights file (LSNConfig.from_json); far above
#: the shipped (base_channels 12) and GPU (32) models.
CONFIG_BOUNDS = {"base_channels": (1, 256), "channel_mults": (1, 64), "blocks_per_level": (1, 8), "heads": (1, 64),
                 "attn_layers": (0, 16), "groups": (1, 256), "rope_base": (1e-3, 1e9), "input_scale": (1e-6, 1e6),
                 "refine_channels": (0, 256), "refine_layers": (2, 32)}
#: Largest model a weights file may describe (the shipped one has 0.8 M parameters).
MAX_PARAMETERS = 50_000_000


@dataclass
class LSNConfig:
    """Hyper-parameters of :class:`LSN` (stored with the weights as JSON).

    Args:
        base_channels: channels at full resolution.
        channel_mults: channel multiplier per resolution level; ``len - 1`` = number of
            stride-2 downsamplings (``depth``); inputs must be divisible by ``2**depth``.
        blocks_per_level: residual blocks per encoder level.
        heads: attention heads in the bottleneck (``channels // heads`` must be divisible by 4
            for the 2-D rotary encoding).
        attn_layers: transformer blocks in the bottleneck (0 disables attention).
        groups: GroupNorm groups (reduced to a divisor of the channel count where needed).
        rope_base: rotary-encoding base (wavelengths in bottleneck tokens).
        input_scale: the input is multiplied by this before the first convolution.
        refine_channels: width of the full-resolution :class:`DenoiseRefiner` of the denoised
            image (0: none, the layout of the v1/v2 weights).
        refine_layers: its number of 3×3 convolutions (>= 2).
    """

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 4, 8)
    blocks_per_level: int = 1
    heads: int = 4
    attn_layers: int = 1
    groups: int = 8
    rope_base: float = 100.0
    input_scale: float = 2.0
    refine_channels: int = 0
    refine_layers: int = 6

    def __post_init__(self):
        for name in ("base_channels", "blocks_per_level", "heads", "attn_layers", "groups", "refine_channels",
                     "refine_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"config: {name} must be an int, got {v!r}")
        for name in ("blocks_per_level", "heads", "groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if self.attn_layers < 0:
            raise ValueError(f"config: attn_layers must be >= 0, got {self.attn_layers}")
        for name in ("rope_base", "input_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"config: {name} must be a finite number > 0, got {v!r}")
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        if self.base_channels < 1 or not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError("config: base_channels and channel_mults must be >= 1")
        c = self.base_channels * self.channel_mults[-1]
        if self.attn_layers > 0 and (c % self.heads or (c // self.heads) % 4):
            raise ValueError(f"config: bottleneck channels {c} must split into {self.heads} heads of a multiple of 4")
        if self.refine_channels < 0 or self.refine_layers < 2:
            raise ValueError(f"config: refine_channels must be >= 0 and refine_layers >= 2, got "
                             f"{self.refine_channels}, {self.refine_layers}")

    @property
    def depth(self) -> int:
        return len(self.channel_mults) - 1

    @property
    def multiple(self) -> int:
        return 2 ** self.depth

    def to_json(self) -> str:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s: str | dict) -> "LSNConfig":
        """A config from its JSON (or a dict), checked strictly: a JSON object, no unknown
        fields, exact types (ints are ints, not bools or floats), every size within
        :data:`CONFIG_BOUNDS`, and the model it describes within :data:`MAX_PARAMETERS` — all
        before anything is allocated (a weights file is untrusted input)."""
        d = json.loads(s) if isinstance(s, str) else s
        if not isinstance(d, dict):
            raise ValueError(f"config: expected a JSON object of LSNConfig fields, got a JSON {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown} (known: {sorted(known)})")
        for k, v in d.items():
            lo, hi = CONFIG_BOUNDS[k]
            if k == "channel_mults":
                if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= 7:
                    raise ValueError(f"config: channel_mults must be a list of 1 to 7 ints, got {v!r}")
                vals = v
            else:
                vals = [v]
            for x in vals:
                want_float = k in ("rope_base", "input_scale")
                ok = (isinstance(x, (int, float)) if want_float else isinstance(x, int)) and not isinstance(x, bool)
                if not ok:
                    raise TypeError(f"config: {k} must be {'a number' if want_float else 'an int'}, got {x!r}")
                if not (lo <= x <= hi):
                    raise ValueError(f"config: {k} = {x!r} is outside [{lo}, {hi}]")
        cfg = cls(**{k: (tuple(v) if k == "channel_mults" else v) for k, v in d.items()})
        n = cfg.parameter_count()
        if n > MAX_PARAMETERS:
            raise ValueError(f"config: describes a model of {n:,} parameters, more than MAX_PARAMETERS={MAX_PARAMETERS:,}")
        return cfg

    def parameter_count(self) -> int:
        """Parameters of ``LSN(self)``, counted on the meta device (nothing allocated)."""
        with torch.device("meta"):
            return sum(p.numel() for p in LSN(self).parameters())

    # named presets ---------------------------------------------------------------
    @classmethod
    def tiny(cls) -> "LSNConfig":
        """For tests: ~30k parameters."""
        return cls(base_channels=4, channel_mults=(1, 2, 2, 4, 4), heads=2, attn_layers=1, groups=4)

    @classmethod
    def small(cls) -> "LSNConfig":
        """CPU-trainable (the shipped CPU weights): ~0.8M parameters."""
        return cls(base_channels=12, channel_mults=(1, 2, 4, 4, 8), heads=4, attn_layers=1, groups=4)

    @classmethod
    def default(cls) -> "LSNConfig":
        """GPU real-time size: a few M parameters."""
        return cls()

    @classmethod
    def named(cls, name: str) -> "LSNConfig":
        presets = {"tiny": cls.tiny, "small": cls.small, "default": cls.default}
        if name not in presets:
            raise ValueError(f"model: expected one of {sorted(presets)}, got {name!r}")
        return presets[name]()


# ------------------------------------------------------------------------------ blocks
def _gn(c: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(c, groups), c)


def _norm_silu(norm: nn.GroupNorm, x: torch.Tensor, fused: bool) -> torch.Tensor:
    """``silu(norm(x))``; one fused Triton kernel pair when ``fused`` (inference, see LSN.fuse)."""
    if fused:
        from lsn_fast.model.fused import group_norm_act

        return group_norm_act(x, norm)
    return F.silu(norm(x))


class DenoiseRefiner(nn.Module):
    """Full-resolution residual CNN that corrects the U-Net's denoised image D0.

    Input (B,5,H,W): the attenuation image y, D0 and the three layer fractions p; output
    (B,1,H,W), a correction added to D0. The U-Net has only ``base_channels`` at full resolution,
    which limits how sharply it can undo the detector blur at edges (where most of the
    recomposition error sits); this adds width there. The last convolution starts at zero, so a
    new refiner leaves a trained model's output unchanged.
    """

    def __init__(self, channels: int, layers: int):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(5, channels, 3, padding=1), nn.SiLU()]
        for _ in range(layers - 2):
            mods += [nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU()]
        mods.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y: torch.Tensor, d0: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([y, d0, frac], dim=1))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.fused = False
        self.fused_convs = False
        self.n1, self.c1 = _gn(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _gn(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        if self.fused_convs:  # two normalize-activate-convolve kernels; the residual add rides in the second
            from lsn_fast.model.fused import conv3x3_act

            h = conv3x3_act(x, self.c1.weight, self.c1.bias, norm=self.n1, silu=True)
            return conv3x3_act(h, self.c2.weight, self.c2.bias, norm=self.n2, silu=True, residual=self.skip(x))
        h = self.c1(_norm_silu(self.n1, x, self.fused))
        h = self.c2(_norm_silu(self.n2, h, self.fused))
        return self.skip(x) + h


def rope_2d(t: torch.Tensor, h: int, w: int, base: float) -> torch.Tensor:
    """Axial 2-D rotary encoding of (B, heads, h·w, d) tokens (row-major grid), d % 4 == 0.

    The first d/2 channels rotate with the row index, the last d/2 with the column index, so
    ``<rope(q)_i, rope(k)_j>`` depends on the positions only through ``pos_i − pos_j``.
    """
    d = t.shape[-1]
    n = d // 4
    inv = base ** (-torch.arange(n, device=t.device, dtype=torch.float32) / max(n, 1))
    ys = torch.arange(h, device=t.device, dtype=torch.float32).repeat_interleave(w)
    xs = torch.arange(w, device=t.device, dtype=torch.float32).repeat(h)
    out = []
    for pos, part in ((ys, t[..., : d // 2]), (xs, t[..., d // 2:])):
        ang = pos[:, None] * inv[None, :]  # (N, n)
        cos, sin = ang.cos().to(t.dtype), ang.sin().to(t.dtype)
        a, b = part[..., 0::2], part[..., 1::2]
        out.append(torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2))
    return torch.cat(out, dim=-1)


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention over all tokens + a 1×1 feed-forward, both residual."""

    def __init__(self, c: int, heads: int, groups: int, rope_base: float):
        super().__init__()
        self.heads, self.rope_base = heads, rope_base
        self.norm = _gn(c, groups)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        self.norm2 = _gn(c, groups)
        self.ff1, self.ff2 = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(2 * c, c, 1)
        nn.init.zeros_(self.proj.weight), nn.init.zeros_(self.proj.bias)
        nn.init.zeros_(self.ff2.weight), nn.init.zeros_(self.ff2.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, N, d)
        q, k = rope_2d(q, H, W, self.rope_base), rope_2d(k, H, W, self.rope_base)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        x = x + self.proj(a.transpose(-1, -2).reshape(B, C, H, W))
        return x + self.ff2(F.silu(self.ff1(self.norm2(x))))


# ------------------------------------------------------------------------------ output
@dataclass
class LSNOutput:
    """What :meth:`LSN.forward` returns.

    Attributes:
        layers: (B,3,H,W) soft, upper, lower, >= 0; their sum is ``denoised``.
        denoised: (B,1,H,W) the denoised attenuation D >= 0.
        seg_logits: (B,2,H,W) bone-mask logits (upper, lower).
    """

    layers: torch.Tensor
    denoised: torch.Tensor
    seg_logits: torch.Tensor

    @property
    def soft(self):
        return self.layers[:, 0]

    @property
    def upper(self):
        return self.layers[:, 1]

    @property
    def lower(self):
        return self.layers[:, 2]

    def stack(self, spacing_mm: float = NOMINAL_SPACING_MM, axis=None) -> LayerStack:
        L = self.layers.float()
        return LayerStack(L[:, 0], L[:, 1], L[:, 2], spacing_mm, axis, validate=False)


# ------------------------------------------------------------------------------ model
class LSN(nn.Module):
    """Layer Separation Network: (B,1,H,W) attenuation -> soft/upper/lower layers.

    ``H`` and ``W`` must be divisible by ``config.multiple`` (16 for the standard depth of 4);
    :func:`separate` pads arbitrary sizes. See the module docstring for the parametrization.
    """

    def __init__(self, config: LSNConfig | None = None):
        super().__init__()
        cfg = config or LSNConfig()
        self.config = cfg
        self.fused = False
        self.fused_convs = False
        # under autocast, compute the head convolution and the refiner in float32 (set_float32_tail)
        self.float32_tail = False
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        g = cfg.groups
        self.stem = nn.Conv2d(1, ch[0], 3, padding=1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i in range(cfg.depth):
            self.enc.append(nn.Sequential(*[ResBlock(ch[i], ch[i], g) for _ in range(cfg.blocks_per_level)]))
            self.down.append(nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1))
        c = ch[-1]
        self.mid1 = ResBlock(c, c, g)
        self.attn = nn.ModuleList([AttentionBlock(c, cfg.heads, g, cfg.rope_base) for _ in range(cfg.attn_layers)])
        self.mid2 = ResBlock(c, c, g)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(cfg.depth)):
            self.up.append(nn.Conv2d(ch[i + 1], ch[i], 3, padding=1))
            self.dec.append(ResBlock(2 * ch[i], ch[i], g))
        self.head_norm = _gn(ch[0], g)
        self.head = nn.Conv2d(ch[0], 6, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # start as "identity denoiser, all soft tissue, no bone"
            self.head.bias.copy_(torch.tensor([0.0, 2.0, 0.0, 0.0, -2.0, -2.0]))
        self.refine = DenoiseRefiner(cfg.refine_channels, cfg.refine_layers) if cfg.refine_channels > 0 else None

    # ------------------------------------------------------------------ factories
    @classmethod
    def tiny(cls) -> "LSN":
        """A ~30k-parameter model for tests."""
        return cls(LSNConfig.tiny())

    @classmethod
    def small(cls) -> "LSN":
        return cls(LSNConfig.small())

    @classmethod
    def pretrained(cls, path: str | os.PathLike | None = None, map_location="cpu") -> "LSN":
        """Load shipped weights.

        Args:
            path: None or ``"default"`` (``lsn_fast/weights/lsn_default.safetensors``, tuned on
                256 px / 25.6 mm fields of view); ``"small-fov"`` (``lsn_small_fov.safetensors``,
                for 128 px / 12.8 mm crops); or the path of any safetensors file written by
                :func:`save_weights`. Names take precedence over files of the same name.
            map_location: device to load onto.
        """
        return load_weights(weights_path(path), map_location=map_location)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def check_input(self, images) -> torch.Tensor:
        check_tensor(images, "images", ndim=4, dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64))
        B, C, H, W = images.shape
        m = self.config.multiple
        if C != 1:
            raise ValueError(f"images: expected one channel (B,1,H,W), got shape {tuple(images.shape)}")
        if H % m or W % m:
            raise ValueError(f"images: H and W must be divisible by {m}, got {H}x{W} (lsn_fast.separate pads any size)")
        return images

    def forward(self, images: torch.Tensor, *, validate: bool = True) -> LSNOutput:
        """Separate (B,1,H,W) attenuation images; returns :class:`LSNOutput`."""
        if validate:
            self.check_input(images)
        x = images.to(self.stem.weight.dtype) if not torch.is_autocast_enabled() else images.float()
        h = self.stem(x * self.config.input_scale)
        skips = []
        for enc, down in zip(self.enc, self.down):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.mid1(h)
        for a in self.attn:
            h = a(h)
        h = self.mid2(h)
        for up, dec in zip(self.up, self.dec):
            if self.fused_convs:  # reads h nearest-upsampled; the 4x tensor is never stored
                from lsn_fast.model.fused import conv3x3_act

                h = conv3x3_act(h, up.weight, up.bias, upsample=True)
            else:
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = dec(torch.cat([h, skips.pop()], dim=1))
        dev = x.device.type
        if self.float32_tail and torch.is_autocast_enabled(dev):
            with torch.autocast(dev, enabled=False):
                return self._tail(x.float(), h.float())
        return self._tail(x, h)

    def _tail(self, x: torch.Tensor, h: torch.Tensor) -> LSNOutput:
        """The head convolution and the output parametrization from the decoder's output ``h``."""
        if self.fused_convs:
            from lsn_fast.model.fused import conv3x3_act

            out = conv3x3_act(h, self.head.weight, self.head.bias, norm=self.head_norm, silu=True)
        else:
            out = self.head(_norm_silu(self.head_norm, h, self.fused))
        if self.fused:  # the kernels read the head in its own dtype; no float copy of all 6 channels
            return self._fused_head(x, out)
        return self._eager_head(x, out)

    def _eager_head(self, x: torch.Tensor, out: torch.Tensor) -> LSNOutput:
        """The output parametrization (module docstring) from the input ``x`` (B,1,H,W) and the
        head's output ``out`` (B,6,H,W), with the refiner when there is one."""
        out = out.float()
        denoised = F.relu(x.float() + out[:, 0:1])
        frac = torch.softmax(out[:, 1:4], dim=1)
        if self.refine is not None:
            rd = self.refine.net[0].weight.dtype  # a bf16/fp16 model without autocast runs the refiner in its dtype
            denoised = F.relu(denoised + self.refine(x.to(rd), denoised.to(rd), frac.to(rd)).float())
        return LSNOutput(layers=denoised * frac, denoised=denoised, seg_logits=out[:, 4:6])

    def _fused_head(self, x: torch.Tensor, out: torch.Tensor) -> LSNOutput:
        """:meth:`_eager_head` through :mod:`lsn_fast.fused`'s kernels: the same values."""
        from lsn_fast.model.fused import recompose_head, refine_input

        correction = None
        if self.refine is not None:
            dev = x.device.type
            # the dtype the refiner's first convolution computes in: autocast casts its input to
            # that anyway, so the kernel writes it there directly
            dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.refine.net[0].weight.dtype
            h = refine_input(x, out, dtype=dt)
            if self.fused_convs:  # each SiLU is applied as the next convolution loads its input
                from lsn_fast.model.fused import conv3x3_act

                convs = [m for m in self.refine.net if isinstance(m, nn.Conv2d)]
                for i, conv in enumerate(convs):
                    h = conv3x3_act(h, conv.weight, conv.bias, silu=i > 0)
                correction = h
            else:
                correction = self.refine.net(h)
        layers, denoised = recompose_head(x, out, correction)
        return LSNOutput(layers=layers, denoised=denoised, seg_logits=out[:, 4:6].float())

    def set_float32_tail(self, enable: bool = True) -> "LSN":
        """Compute the head convolution and the refiner in float32 even under bf16/fp16 autocast
        (in place; returns ``self``).

        They produce the denoised image ``D`` itself at full resolution, where bf16's 8-bit
        mantissa is a visible error: on 8 held-out ``wide`` phantoms (256², CPU, shipped weights)
        the recomposition error is 1.347 % in float32, 1.380 % with everything under bf16 autocast
        and 1.349 % with this tail (head norm, head convolution, refiner) in float32 (the refiner
        alone in float32: 1.361 %). The price is float32 arithmetic for a quarter of the shipped
        model's convolution FLOPs (1.41 of 5.68 GFLOP per 256² image: the refiner runs at full
        resolution); the U-Net itself stays in bf16. Off by default; on a GPU its cost is not
        measured yet (``benchmarks/bench_lsn.py`` row ``fused-graph-f32tail``).
        """
        self.float32_tail = bool(enable)
        return self

    def fuse(self, enable: bool = True, convs: bool = False) -> "LSN":
        """Run GroupNorm+SiLU pairs and the recomposition head (with a refiner: its input and its
        correction too) as fused Triton kernels (in place).

        With ``convs=True`` the 3×3 convolutions that follow a normalization, an activation or an
        upsampling (both in every ResBlock, the head, the refiner's, the decoder's) also become
        Triton kernels that apply the GroupNorm and SiLU (or read nearest-upsampled) as they load
        their input and add the bias and the ResBlock's residual before they store
        (:func:`lsn_fast.fused.conv3x3_act`): the activated and upsampled tensors never go to
        memory. Off by default until a GPU benchmark shows it faster than cuDNN there.

        The kernels are inference-only: where autograd records, or where Triton cannot run (CPU
        without ``TRITON_INTERPRET=1``), each op falls back to its eager form, so a fused model
        still trains and runs everywhere. Same weights, same outputs up to float rounding.
        Returns ``self``.
        """
        if convs and not enable:
            raise ValueError("convs: the fused convolutions need enable=True")
        self.fused = bool(enable)
        self.fused_convs = bool(convs)
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.fused = self.fused
                m.fused_convs = self.fused_convs
        return self


def with_refiner(model: LSN, channels: int, layers: int = 6, seed: int = 0) -> LSN:
    """``model`` with a :class:`DenoiseRefiner` of ``channels`` × ``layers``: a copy holding the
    same weights, whose outputs equal ``model``'s until the refiner is trained.

    * No refiner yet: a new one with a zero last convolution.
    * A narrower refiner of the same depth: it is **widened** without changing the function. The
      old channels keep their weights; each new channel gets small random input weights (drawn
      from ``seed``) and zero weights into the next layer, so it starts silent but receives
      gradients (its activations are not zero), as in Net2Net widening.
    * The same size: returned as is. Fewer channels than the model has, or another depth, raises.
    """
    cfg = model.config
    channels, layers = int(channels), int(layers)
    old = cfg.refine_channels
    if old == channels and cfg.refine_layers == layers:
        return model
    if old and (cfg.refine_layers != layers or channels < old):
        raise ValueError(f"refine_channels: the model has a {old}x{cfg.refine_layers} refiner; it can be widened to more "
                         f"channels at the same depth, not changed to {channels}x{layers}")
    new = LSN(replace(cfg, refine_channels=channels, refine_layers=layers))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("refine.")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("refine.") for k in missing), (missing, unexpected)
    if old:
        g = torch.Generator().manual_seed(int(seed))
        convs = lambda r: [m for m in r.net if isinstance(m, nn.Conv2d)]  # noqa: E731
        with torch.no_grad():
            for src, dst in zip(convs(model.refine), convs(new.refine)):
                co, ci = src.weight.shape[:2]
                dst.weight.zero_()
                dst.bias.zero_()
                # new output channels: small random inputs (from the old and the new channels alike)
                fan_in = dst.weight.shape[1] * 9
                dst.weight[co:] = 0.1 * torch.randn(dst.weight[co:].shape, generator=g) / math.sqrt(fan_in)
                dst.weight[:co, :ci] = src.weight  # old channels: as before, deaf to the new ones
                dst.bias[:co] = src.bias
    return new.to(next(model.parameters()).device)


# ------------------------------------------------------------------------------ weights I/O
def save_weights(model: LSN, path: str | os.PathLike, extra_metadata: dict | None = None) -> None:
    """Write ``model`` as safetensors with the config in ``metadata["lsn_config"]`` (JSON)."""
    from safetensors.torch import save_file

    path = os.fspath(path)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "lsn_fast.LSN", "version": "1", "lsn_config": model.config.to_json()}
    for k, v in (extra_metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))  # with the user's umask


def read_metadata(path: str | os.PathLike) -> dict:
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_weights(path: str | os.PathLike, map_location="cpu") -> LSN:
    """Build an :class:`LSN` from a safetensors file written by :func:`save_weights`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"LSN weights not found: {path}. Train them with `{TRAIN_COMMAND}` "
            f"and the fine-tunes after it in lsn_fast/weights/HISTORY.md (the shipped v6: five runs in all)"
        )
    from safetensors.torch import load_file

    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location: expected a device such as 'cpu' or 'cuda:0', got {map_location!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location: {map_location!r} asks for CUDA, but this torch has no CUDA device "
                         f"(torch {torch.__version__}); use 'cpu'")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:  # the header only: shapes and dtypes, no data
            meta = dict(f.metadata() or {})
            header = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except Exception as e:  # corrupt / foreign file
        raise ValueError(f"path: {path} is not a readable safetensors LSN file ({type(e).__name__}: {e})") from None
    if "lsn_config" not in meta:
        raise ValueError(f"path: {path} has no 'lsn_config' metadata; not an lsn_fast LSN weights file")
    try:
        cfg = LSNConfig.from_json(meta["lsn_config"])  # bounded before anything is built
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"path: {path} has an invalid 'lsn_config' ({type(e).__name__}: {e})") from None
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in LSN(cfg).state_dict().items()}
    bad_dtype = [f"{k} ({dt})" for k, (dt, _) in header.items() if dt != "F32"]
    if bad_dtype:
        raise ValueError(f"path: {path} holds weights that are not float32 (e.g. {bad_dtype[:3]}); "
                         "save_weights writes float32 only")
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ValueError(f"path: {path} does not match its config (missing {missing[:4]}, unexpected {unexpected[:4]})")
    wrong = [f"{k} {header[k][1]} != {expected[k]}" for k in expected if header[k][1] != expected[k]]
    if wrong:
        raise ValueError(f"path: {path} does not match its config (shapes: {wrong[:3]})")
    try:
        state = load_file(path, device="cpu")
    except Exception as e:
        raise ValueError(f"path: {path} is not a readable safetensors LSN file ({type(e).__name__}: {e})") from None
    model = LSN(cfg)
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"path: {path} holds NaN or Inf weights (e.g. {bad[:3]})")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"path: {path} does not match its config ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise ValueError(f"path: {path} does not match its config (missing {missing[:4]}, unexpected {unexpected[:4]})")
    return model.to(device).eval()


# ------------------------------------------------------------------------------ separate
_DEFAULT_MODEL: dict = {}


def _default_model(device, name: str = "default") -> LSN:
    key = (str(device), name)
    if key not in _DEFAULT_MODEL:
        _DEFAULT_MODEL[key] = LSN.pretrained(name, map_location=device)
    return _DEFAULT_MODEL[key]


def separate(
    images: torch.Tensor,
    model: LSN | str | None = None,
    spacing_mm: float = NOMINAL_SPACING_MM,
    *,
    batch_size: int = 32,
    axis=None,
    return_quality: bool = False,
    progress: bool = False,
):
    """Separate radiograph crops into soft-tissue, upper-bone and lower-bone layers.

    Args:
        images: (B,1,H,W) attenuation images ``−log(q/N0)`` (bone bright), float, finite; any
            H, W (padded internally to the model's multiple). Accuracy depends on the field of
            view the weights were trained on: the default weights saw 256 px (25.6 mm) phantoms
            and separate 128 px crops 3-4× less accurately; for crops of ~12.8 mm pass
            ``model="small-fov"`` (model card, "Known weakness").
        model: an :class:`LSN`; None or a name of :data:`PRETRAINED` (``"default"``,
            ``"small-fov"``) loads those shipped weights (cached per device).
        spacing_mm: the images' pixel spacing, > 0. Other spacings than 0.1 mm are resampled to
            0.1 mm (area/antialiased bilinear), separated, and the layers are mapped back to the
            input grid (bilinear, non-negative weights, so layers stay >= 0 and still add up).
        batch_size: crops per forward pass.
        axis: stored on the returned stack (see :class:`LayerStack`).
        return_quality: also return a :class:`SeparationQuality` (per-crop gates).
        progress: a progress bar over the batches (tqdm, on stderr).
    Returns:
        LayerStack (B,H,W) float32 on the images' device, ``spacing_mm`` = the input spacing;
        with ``return_quality=True`` the pair ``(stack, quality)``.
    """
    check_tensor(images, "images", ndim=4, dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64))
    if images.shape[1] != 1:
        raise ValueError(f"images: expected (B,1,H,W), got shape {tuple(images.shape)}")
    spacing_mm = check_positive_float(spacing_mm, "spacing_mm")
    if not 0.01 <= spacing_mm <= 1.0:
        raise ValueError(f"spacing_mm: expected a radiograph pixel spacing in [0.01, 1] mm, got {spacing_mm}")
    if isinstance(model, str) and model not in PRETRAINED:
        raise ValueError(f"model: expected an lsn_fast.LSN, None or one of {sorted(PRETRAINED)}, got {model!r}")
    if model is not None and not isinstance(model, (LSN, str)):
        raise TypeError(f"model: expected an lsn_fast.LSN, None or a shipped weights name, got {type(model).__name__}")
    if not isinstance(return_quality, bool):
        raise TypeError(f"return_quality: expected a bool, got {type(return_quality).__name__}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size: must be an int >= 1, got {batch_size!r}")
    dev_in = images.device
    if model is None or isinstance(model, str):
        model = _default_model(dev_in, model or "default")
    dev = next(model.parameters()).device
    B, _, H, W = images.shape
    scale = spacing_mm / NOMINAL_SPACING_MM
    Hn, Wn = max(1, round(H * scale)), max(1, round(W * scale))
    m = model.config.multiple
    Hp, Wp = -(-Hn // m) * m, -(-Wn // m) * m
    was_training = model.training
    model.eval()
    outs, cons = [], []
    try:
        from tqdm import tqdm

        starts = range(0, B, batch_size)
        with torch.no_grad():
            for s in tqdm(starts, desc="separate", unit="batch", disable=not progress or len(starts) < 2):
                x = images[s:s + batch_size].to(device=dev, dtype=torch.float32)
                if (Hn, Wn) != (H, W):
                    x = F.interpolate(x, size=(Hn, Wn), mode="bilinear", align_corners=False, antialias=scale < 1.0)
                if (Hp, Wp) != (Hn, Wn):
                    x = F.pad(x, (0, Wp - Wn, 0, Hp - Hn), mode="replicate")
                ac = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else _null()
                with ac:
                    out = model(x, validate=False)
                L = out.layers.float()
                if return_quality:  # do the bone masks the network predicts agree with its own bone layers?
                    seg = out.seg_logits.float()[:, :, :Hn, :Wn] > 0
                    lay = L[:, 1:3, :Hn, :Wn] > BONE_MASK_LEVEL
                    inter = (seg & lay).flatten(1).sum(1).float()
                    union = (seg | lay).flatten(1).sum(1).float()
                    cons.append(torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).cpu())
                L = L[:, :, :Hn, :Wn]
                if (Hn, Wn) != (H, W):
                    L = F.interpolate(L, size=(H, W), mode="bilinear", align_corners=False, antialias=scale > 1.0)
                outs.append(L.clamp_min(0.0).to(dev_in))
    finally:
        model.train(was_training)
    L = torch.cat(outs)
    stack = LayerStack(L[:, 0], L[:, 1], L[:, 2], spacing_mm, axis, validate=False)
    if not return_quality:
        return stack
    return stack, SeparationQuality.of(images, L, torch.cat(cons))


# ------------------------------------------------------------------------------ quality gates
#: A layer value above this counts as bone for the masks of the consistency gate.
BONE_MASK_LEVEL = 0.02
#: Gates of :class:`SeparationQuality` (from the phantoms: held-out recomposition 0.99 %, 2.4 %
#: with detector noise; bone 21 % of the total attenuation, 10-35 % over the training ranges).
QUALITY_LIMITS = {"recomposition_error": 0.05, "bone_fraction": (0.08, 0.45), "layer_consistency": 0.5,
                  "input_range": (0.0, 3.0), "soft_contour": 0.02}
# soft_contour: 0.004 median on noisy held-out phantoms with v13 (true layers: 0.000), 0.04-0.06 on
# real dev crops, whose soft layers visibly carry the bone margins (lab/2026-12-08-stage2-real)


@dataclass
class SeparationQuality:
    """Per-crop quality of a separation (``separate(..., return_quality=True)``).

    Attributes (each a (B,) float tensor on the CPU, or a list of B entries):
        recomposition_error: ``mean|soft + upper + lower − input| / mean|input|`` (phantoms: ~1 %).
        bone_fraction: ``sum(upper + lower) / sum(soft + upper + lower)`` (phantoms: ~21 %).
        layer_consistency: IoU of the network's own bone-mask prediction (its segmentation head)
            with its bone layers above :data:`BONE_MASK_LEVEL` (upper and lower together); two
            heads that disagree mean the network is guessing.
        soft_contour: bone leaking into the soft layer: the high-pass energy (image minus its
            Gaussian blur, σ = 2 px) of the soft layer in a 5-px band around the bone margins,
            over the input's in the same band (0: a smooth soft layer; 1: the soft layer carries
            as much edge as the image; NaN where no bone margin is found). Gated at
            ``QUALITY_LIMITS["soft_contour"]`` (0.02; phantoms 0.004, real dev crops 0.04-0.06).
        flagged: (B,) bool, True where any gate of :data:`QUALITY_LIMITS` fails: the crop lies
            outside what the model knows (out of distribution) and its layers should not be
            trusted.
        reasons: per crop, the gates that failed (empty when none).
    """

    recomposition_error: torch.Tensor
    bone_fraction: torch.Tensor
    layer_consistency: torch.Tensor
    flagged: torch.Tensor
    reasons: list
    soft_contour: torch.Tensor | None = None

    @classmethod
    def of(cls, images: torch.Tensor, layers: torch.Tensor, consistency: torch.Tensor) -> "SeparationQuality":
        x = images.detach().float().cpu()[:, 0]
        L = layers.detach().float().cpu()
        tot = L.sum(1)
        rec = (tot - x).abs().flatten(1).mean(1) / x.abs().flatten(1).mean(1).clamp_min(1e-12)
        bone = L[:, 1:].sum(1).flatten(1).sum(1) / tot.flatten(1).sum(1).clamp_min(1e-12)
        lim = QUALITY_LIMITS
        sc = soft_contour(x, L[:, 0], L[:, 1] + L[:, 2])
        reasons = []
        for i in range(x.shape[0]):
            r = []
            if float(sc[i]) > lim["soft_contour"]:  # NaN (no bone margin) is not a contour
                r.append(f"soft layer carries bone contours (soft contour {float(sc[i]):.3f} > {lim['soft_contour']})")
            if not float(rec[i]) <= lim["recomposition_error"]:
                r.append(f"recomposition error {100 * float(rec[i]):.1f} % > {100 * lim['recomposition_error']:.0f} %")
            lo, hi = lim["bone_fraction"]
            if not lo <= float(bone[i]) <= hi:
                r.append(f"bone fraction {100 * float(bone[i]):.1f} % outside [{100 * lo:.0f}, {100 * hi:.0f}] %")
            if not float(consistency[i]) >= lim["layer_consistency"]:
                r.append(f"layer consistency {float(consistency[i]):.2f} < {lim['layer_consistency']}")
            ilo, ihi = lim["input_range"]
            p1, p99 = torch.quantile(x[i].flatten()[:: max(1, x[i].numel() // 65536)], torch.tensor([0.01, 0.99])).tolist()
            if p1 < ilo - 0.05 or p99 > ihi:
                r.append(f"input range [{p1:.2f}, {p99:.2f}] outside the attenuation domain [{ilo}, {ihi}]")
            reasons.append(r)
        flagged = torch.tensor([bool(r) for r in reasons])
        return cls(recomposition_error=rec, bone_fraction=bone, layer_consistency=consistency.float(),
                   flagged=flagged, reasons=reasons, soft_contour=sc)

    def row(self, i: int) -> dict:
        """Crop ``i`` as plain numbers (for JSON)."""
        return {"recomposition_error": round(float(self.recomposition_error[i]), 5),
                "bone_fraction": round(float(self.bone_fraction[i]), 5),
                "layer_consistency": round(float(self.layer_consistency[i]), 4),
                "soft_contour": None if self.soft_contour is None or not math.isfinite(float(self.soft_contour[i]))
                else round(float(self.soft_contour[i]), 4),
                "flagged": bool(self.flagged[i]), "reasons": list(self.reasons[i])}


def soft_contour(image: torch.Tensor, soft: torch.Tensor, bone: torch.Tensor, sigma_px: float = 2.0,
                 band_px: int = 2) -> torch.Tensor:
    """Bone contours left in the soft layer (:class:`SeparationQuality`'s ``soft_contour``).

    Args:
        image, soft, bone: (B,H,W) input attenuation, soft layer, upper + lower bone layers.
        sigma_px: Gaussian σ of the high-pass (image minus its blur), px.
        band_px: half-width of the band around the bone margins (mask above
            :data:`BONE_MASK_LEVEL`, dilated minus eroded), px.
    Returns:
        (B,) float32: high-pass energy of ``soft`` over that of ``image`` in the band; NaN where
        the band is empty or the image has no edge energy there.
    """
    from lsn_fast.physics.reference import gaussian_blur

    x, s_ = image.float(), soft.float()
    B = x.shape[0]
    sig = torch.full((B,), float(sigma_px))

    def hp(t):
        return t - gaussian_blur(t.contiguous(), sig)

    m = (bone.float() > BONE_MASK_LEVEL).float().unsqueeze(1)
    k = 2 * band_px + 1
    dil = F.max_pool2d(m, k, 1, band_px)
    ero = 1.0 - F.max_pool2d(1.0 - m, k, 1, band_px)
    band = (dil - ero)[:, 0] > 0.5
    e_in = (hp(x) ** 2 * band).flatten(1).sum(1)
    e_soft = (hp(s_) ** 2 * band).flatten(1).sum(1)
    ok = band.flatten(1).any(1) & (e_in > 0)
    return torch.where(ok, e_soft / e_in.clamp_min(1e-30), torch.full_like(e_in, float("nan")))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
