"""Fused LSN inference ops: validation, dispatch and their eager references (issue 4, item 5).

Four ops, each with an eager-PyTorch reference (what the tests compare against) and a Triton
implementation (``kernels/lsn_fused.py``):

* :func:`group_norm_act` — ``silu(group_norm(x))`` (or without the SiLU);
* :func:`recompose_head` — the LSN head's ``D = relu(y + r)``, ``layers = D · softmax(z)``, with an
  optional refiner correction ``D = relu(relu(y + r) + c)``;
* :func:`refine_input` — the refiner's input ``[y, relu(y + r), softmax(z)]`` in one tensor;
* :func:`conv3x3_act` — ``conv3x3(silu(group_norm(x))) + residual`` (each part optional, the input
  optionally read nearest-upsampled), the normalization and activation applied as the
  convolution loads its input (``LSN.fuse(convs=True)``).

``backend="auto"`` takes Triton for CUDA tensors (or on CPU under ``TRITON_INTERPRET=1``, which is
how CI tests the kernels) and the eager reference otherwise, and always the reference while
autograd records (the fused kernels are inference-only). :meth:`lsn_fast.LSN.fuse` switches a
model to these ops.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakTensorKeyDictionary

__all__ = ["group_norm_act", "recompose_head", "refine_input", "conv3x3_act", "group_norm_act_reference",
           "recompose_head_reference", "refine_input_reference", "conv3x3_act_reference", "triton_available"]

_FLOAT = (torch.float32, torch.float16, torch.bfloat16)


def _triton_unavailable_reason(device: torch.device) -> str | None:
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and not interpret):
        return f"Triton kernels are not available on {device} (CUDA, or CPU with TRITON_INTERPRET=1)"
    try:
        import lsn_fast.ops.kernels.lsn_fused  # noqa: F401
    except Exception as e:  # noqa: BLE001 - no triton, or a triton that cannot load
        return f"Triton kernels cannot load: {type(e).__name__}: {e}"
    if interpret:
        from lsn_fast.ops.registry import triton_interpreter_problem

        return triton_interpreter_problem()
    return None


def triton_available(device: torch.device | str) -> bool:
    """Whether the Triton kernels can run on ``device`` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    return _triton_unavailable_reason(torch.device(device)) is None


def _use_triton(backend: str, device: torch.device, *tensors) -> bool:
    if backend not in ("auto", "triton", "reference"):
        raise ValueError(f"backend: expected 'auto', 'triton' or 'reference', got {backend!r}")
    if backend == "reference":
        return False
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    reason = _triton_unavailable_reason(torch.device(device))
    ok = reason is None
    if backend == "triton":
        if not ok:
            raise RuntimeError(f"backend='triton': {reason}")
        if grad:
            raise RuntimeError("backend='triton': the fused LSN kernels are inference-only; "
                               "use torch.no_grad() or backend='auto'")
        return True
    return ok and not grad


def _check_activation(x) -> tuple[int, int, int, int]:
    """``x`` is a non-empty (B,C,H,W) float32/float16/bfloat16 tensor; returns its shape."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x: expected a (B,C,H,W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in _FLOAT:
        raise TypeError(f"x: expected float32, float16 or bfloat16, got {x.dtype}")
    B, C, H, W = x.shape
    if min(B, C, H, W) < 1:
        raise ValueError(f"x: empty tensor of shape {tuple(x.shape)}")
    return B, C, H, W


def _check_group_size(x: torch.Tensor, groups: int) -> None:
    B, C, H, W = x.shape
    if C // groups * H * W < 2:
        raise ValueError(f"x: GroupNorm needs more than one value per group, got shape {tuple(x.shape)} with {groups} groups")


def _contiguous_any(x: torch.Tensor) -> torch.Tensor:
    """``x`` if NCHW-contiguous or channels-last (what the GroupNorm kernels walk), else a contiguous copy."""
    return x if (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)) else x.contiguous()


# ------------------------------------------------------------------------------ GroupNorm + SiLU
def group_norm_act_reference(x, groups, weight=None, bias=None, eps=1e-5, silu=True):
    """Eager reference: ``F.group_norm`` (+ ``F.silu``)."""
    y = F.group_norm(x, groups, weight, bias, eps)
    return F.silu(y) if silu else y


def group_norm_act(
    x: torch.Tensor,
    groups: int | nn.GroupNorm,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    silu: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """GroupNorm (+ per-channel affine) followed by SiLU, fused.

    Args:
        x: (B,C,H,W) float32/float16/bfloat16, NCHW-contiguous or channels-last (any other
            layout is made contiguous first).
        groups: number of groups (divides C), or an ``nn.GroupNorm`` whose groups, affine
            parameters and eps are used (then ``weight``, ``bias``, ``eps`` must be left unset).
        weight, bias: (C,) affine parameters, or None.
        eps: added to the variance.
        silu: apply SiLU after the normalization.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.
    Returns:
        Tensor like ``x`` (shape, dtype, memory format). Statistics in float32.
    """
    if isinstance(groups, nn.GroupNorm):
        if weight is not None or bias is not None or eps != 1e-5:
            raise ValueError("groups: pass either an nn.GroupNorm or groups/weight/bias/eps, not both")
        norm = groups
        groups, weight, bias, eps = norm.num_groups, norm.weight, norm.bias, norm.eps
    C = _check_activation(x)[1]
    groups = int(groups)
    if groups < 1 or C % groups:
        raise ValueError(f"groups: must divide the {C} channels, got {groups}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and (p.shape != (C,) or p.device != x.device):
            raise ValueError(f"{name}: expected ({C},) on {x.device}, got {tuple(p.shape)} on {p.device}")
    if (weight is None) != (bias is None):
        raise ValueError("weight/bias: give both or neither")
    _check_group_size(x, groups)
    if not eps >= 0:
        raise ValueError(f"eps: must be >= 0, got {eps}")
    if not _use_triton(backend, x.device, x, weight, bias):
        return group_norm_act_reference(x, groups, weight, bias, eps, silu)
    from lsn_fast.ops.kernels.lsn_fused import group_norm_act_triton

    return group_norm_act_triton(_contiguous_any(x), groups, weight, bias, eps, silu)


# ------------------------------------------------------------------------------ recomposition head
def recompose_head_reference(y: torch.Tensor, head: torch.Tensor, correction: torch.Tensor | None = None):
    """Eager reference: ``D = relu(y + head[:,0])`` (then ``D = relu(D + correction)``),
    ``layers = D · softmax(head[:,1:4])``."""
    h = head.float()
    d = F.relu(y.float() + h[:, 0:1])
    if correction is not None:
        d = F.relu(d + correction.float())
    return d * torch.softmax(h[:, 1:4], dim=1), d


def refine_input_reference(y: torch.Tensor, head: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Eager reference: ``cat([y, relu(y + head[:,0]), softmax(head[:,1:4])]).to(dtype)``, (B,5,H,W)."""
    h = head.float()
    y = y.float()
    return torch.cat([y, F.relu(y + h[:, 0:1]), torch.softmax(h[:, 1:4], dim=1)], dim=1).to(dtype)


def _check_head(y, head):
    for name, t in (("y", y), ("head", head)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            raise ValueError(f"{name}: expected a (B,C,H,W) tensor, got {getattr(t, 'shape', type(t).__name__)}")
        if t.dtype not in _FLOAT:
            raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {t.dtype}")
    if y.shape[1] != 1 or head.shape[1] < 4 or y.shape[0] != head.shape[0] or y.shape[2:] != head.shape[2:]:
        raise ValueError(f"y/head: expected (B,1,H,W) and (B,>=4,H,W), got {tuple(y.shape)} and {tuple(head.shape)}")
    if y.device != head.device:
        raise ValueError(f"y/head: on different devices ({y.device}, {head.device})")
    if y.numel() == 0:
        raise ValueError(f"y: empty tensor of shape {tuple(y.shape)}")


def _flat(t: torch.Tensor) -> torch.Tensor:
    """``t`` if its H and W dimensions flatten to one pixel index (what the kernels address), else a contiguous copy."""
    B, C, H, W = t.shape
    ok = W == 1 or H == 1 or t.stride(2) == W * t.stride(3)
    return t if ok else t.contiguous()


def recompose_head(y: torch.Tensor, head: torch.Tensor, correction: torch.Tensor | None = None, *,
                   backend: str = "auto"):
    """The LSN's output parametrization, fused.

    Args:
        y: (B,1,H,W) input attenuation (any float dtype).
        head: (B,K,H,W) head output, K >= 4: channel 0 the residual r, channels 1–3 the logits of
            the soft/upper/lower fractions (further channels are ignored here).
        correction: optional (B,1,H,W) correction c of the denoised image (the
            :class:`~lsn_fast.lsn.DenoiseRefiner`'s output): ``D = relu(relu(y + r) + c)``.
    Returns:
        ``(layers (B,3,H,W) float32 >= 0, denoised (B,1,H,W) float32 >= 0)`` with
        ``layers.sum(1) == denoised`` up to float rounding.
    """
    _check_head(y, head)
    if correction is not None:
        if not isinstance(correction, torch.Tensor) or correction.shape != y.shape:
            raise ValueError(f"correction: expected shape {tuple(y.shape)} like y, got "
                             f"{tuple(getattr(correction, 'shape', ())) or type(correction).__name__}")
        if correction.dtype not in _FLOAT:
            raise TypeError(f"correction: expected float32, float16 or bfloat16, got {correction.dtype}")
        if correction.device != y.device:
            raise ValueError(f"correction: on {correction.device}, y on {y.device}")
    if not _use_triton(backend, y.device, y, head, correction):
        return recompose_head_reference(y, head, correction)
    from lsn_fast.ops.kernels.lsn_fused import recompose_head_triton

    return recompose_head_triton(_flat(y), _flat(head), None if correction is None else _flat(correction))


def refine_input(y: torch.Tensor, head: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                 channels_last: bool | None = None, backend: str = "auto") -> torch.Tensor:
    """The :class:`~lsn_fast.lsn.DenoiseRefiner`'s input, fused: ``[y, relu(y + r), softmax(z)]``.

    Args:
        y, head: as for :func:`recompose_head`.
        dtype: storage dtype of the result (float32, or the convolution's autocast dtype: writing
            bf16 here is what autocast would cast the float32 input to anyway).
        channels_last: memory format of the result; ``None`` takes ``head``'s (channels-last
            when ``head`` is channels-last and not also NCHW-contiguous).
    Returns:
        (B,5,H,W) tensor in ``dtype``: channel 0 ``y``, 1 the denoised ``D0 = relu(y + r)`` (>= 0),
        2–4 the soft/upper/lower fractions (>= 0, sum to 1).
    """
    _check_head(y, head)
    if dtype not in _FLOAT:
        raise TypeError(f"dtype: expected float32, float16 or bfloat16, got {dtype}")
    if channels_last is None:
        channels_last = head.is_contiguous(memory_format=torch.channels_last) and not head.is_contiguous()
    if not _use_triton(backend, y.device, y, head):
        out = refine_input_reference(y, head, dtype)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out
    from lsn_fast.ops.kernels.lsn_fused import refine_input_triton

    return refine_input_triton(_flat(y), _flat(head), dtype, bool(channels_last))


# ------------------------------------------------------------------------------ normalize-activate-convolve
def conv3x3_act_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                          norm: nn.GroupNorm | None = None, silu: bool = False,
                          residual: torch.Tensor | None = None, upsample: bool = False) -> torch.Tensor:
    """Eager reference: ``conv2d(up(act(x)), weight, bias, padding=1) (+ residual)`` with
    ``act = silu ∘ norm`` (each optional) and ``up`` a nearest 2x upsampling when ``upsample``,
    computed in float32 and returned in ``x``'s dtype."""
    a = x.float()
    if norm is not None:
        a = F.group_norm(a, norm.num_groups, None if norm.weight is None else norm.weight.float(),
                         None if norm.bias is None else norm.bias.float(), norm.eps)
    if silu:
        a = F.silu(a)
    a = a.to(x.dtype).float()  # the activation is stored in x's dtype before the convolution (as eager autocast does)
    if upsample:
        a = F.interpolate(a, scale_factor=2.0, mode="nearest")
    y = F.conv2d(a, weight.to(x.dtype).float(), None if bias is None else bias.float(), padding=1)
    if residual is not None:
        y = y + residual.float()
    return y.to(x.dtype)


_W9_CACHE = WeakTensorKeyDictionary()  # weight tensor -> (key, w9, bias); by identity, dropped with the weight


def _padded_weights(weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
    """(9, CIP, COP) weights in ``dtype`` and (COP,) float32 bias, zero-padded to whole channel
    tiles of the kernel; cached per weight tensor and version (inference weights do not change
    between calls)."""
    cout, cin = weight.shape[:2]
    key = (dtype, weight._version, None if bias is None else bias._version, None if bias is None else id(bias))
    entry = _W9_CACHE.get(weight)
    if entry is not None and entry[0] == key:
        return entry[1], entry[2]
    from lsn_fast.ops.kernels.lsn_fused import conv_tiles

    ti, to = conv_tiles(cin, cout)
    ci, co = -(-cin // ti) * ti, -(-cout // to) * to
    w9 = torch.zeros((9, ci, co), device=weight.device, dtype=dtype)
    w9[:, :cin, :cout] = weight.detach().permute(2, 3, 1, 0).reshape(9, cin, cout).to(dtype)
    b = torch.zeros(co, device=weight.device, dtype=torch.float32)
    if bias is not None:
        b[:cout] = bias.detach().float()
    _W9_CACHE[weight] = (key, w9, b)
    return w9, b


def conv3x3_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                norm: nn.GroupNorm | None = None, silu: bool = False, residual: torch.Tensor | None = None,
                upsample: bool = False, backend: str = "auto") -> torch.Tensor:
    """``conv2d(silu(group_norm(x)), weight, bias, padding=1) + residual``, one kernel after the statistics.

    The normalization and activation are applied as the convolution loads its input, and the bias
    and residual are added before its one store, so the activated tensor never goes to memory:
    a ResBlock half ``conv(silu(norm(x)))`` costs one read of ``x`` for the statistics, one for the
    convolution and one write, instead of GroupNorm+SiLU's two reads and a write before the
    convolution's own read and write (and the residual add's two reads and a write).

    Args:
        x: (B,Cin,H,W) float32/float16/bfloat16 activations, channels-last or NCHW-contiguous
            (strided views work); the convolution computes in ``x``'s dtype (float32: IEEE, not TF32)
            with float32 accumulation.
        weight: (Cout,Cin,3,3); bias: (Cout,) or None.
        norm: an ``nn.GroupNorm`` over Cin applied first (its groups, affine parameters and eps).
        silu: apply SiLU (after ``norm``) to the input.
        residual: (B,Cout,H',W') added to the output, or None.
        upsample: convolve the nearest 2x upsampling of the activated input (the U-Net decoder's
            ``conv(interpolate(x, scale_factor=2))``), read from ``x`` without storing it.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.
    Returns:
        (B,Cout,H',W') in ``x``'s dtype and memory format (channels-last when ``x`` is), where
        H',W' = H,W, or 2H,2W with ``upsample``.
    """
    B, C, H, W = _check_activation(x)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4 or weight.shape[1:] != (C, 3, 3):
        raise ValueError(f"weight: expected (Cout,{C},3,3), got {tuple(getattr(weight, 'shape', ()))}")
    cout = weight.shape[0]
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (cout,)):
        raise ValueError(f"bias: expected ({cout},), got {tuple(getattr(bias, 'shape', ()))}")
    if norm is not None and (not isinstance(norm, nn.GroupNorm) or norm.num_channels != C):
        raise ValueError(f"norm: expected an nn.GroupNorm over {C} channels, got {norm!r}")
    if norm is not None:
        _check_group_size(x, norm.num_groups)
    up = 2 if upsample else 1
    if residual is not None and (not isinstance(residual, torch.Tensor) or residual.shape != (B, cout, up * H, up * W)):
        raise ValueError(f"residual: expected shape {(B, cout, up * H, up * W)}, got "
                         f"{tuple(getattr(residual, 'shape', ()))}")
    if residual is not None and residual.dtype not in _FLOAT:
        raise TypeError(f"residual: expected float32, float16 or bfloat16, got {residual.dtype}")
    for name, t in (("weight", weight), ("bias", bias), ("residual", residual)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{name}: on {t.device}, x on {x.device}")
    params = (weight, bias) + (() if norm is None else (norm.weight, norm.bias))
    if not _use_triton(backend, x.device, x, residual, *params):
        return conv3x3_act_reference(x, weight, bias, norm=norm, silu=silu, residual=residual, upsample=upsample)
    from lsn_fast.ops.kernels.lsn_fused import conv3x3_triton, gn_scale_shift_triton

    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    scale = shift = None
    if norm is not None:
        scale, shift = gn_scale_shift_triton(_contiguous_any(x), norm.num_groups, norm.weight, norm.bias, norm.eps)
    w9, b = _padded_weights(weight, bias, x.dtype)
    return conv3x3_triton(x, w9, b, cout, scale, shift, silu, residual, channels_last, upsample=bool(upsample))

