"""``torch.library`` registration of the fused synthesis operator.

``torch.ops.lsn_fast.synthesize`` is registered once; its implementation dispatches to the
backend named by its ``backend`` argument (resolved by :mod:`lsn_fast.backends`). A fake
(meta) implementation makes it traceable by ``torch.compile`` without graph breaks, and its
backward is the vector–Jacobian product of the differentiable reference, so every backend gets
gradients w.r.t. the layers and the displacement.

The op does no validation; call it through :func:`lsn_fast.compose` / :func:`lsn_fast.synthesize`
unless you need it inside a compiled region with inputs you have already checked.
"""

from __future__ import annotations

import torch

from lsn_fast.ops.registry import resolve as _resolve
from lsn_fast.physics.reference import synthesize_reference

_INTERP_NAMES = ("linear", "cubic")
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def seed_to_signed(seed: int) -> int:
    """Map a uint64 seed to the int64 the op schema carries (two's complement)."""
    return seed - (1 << 64) if seed >= (1 << 63) else seed


def _seed_unsigned(seed: int) -> int:
    return seed + (1 << 64) if seed < 0 else seed


@torch.library.custom_op("lsn_fast::synthesize", mutates_args=())
def synthesize_op(
    soft: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    index: torch.Tensor,
    disp: torch.Tensor,
    params: torch.Tensor | None,
    sample_index: torch.Tensor,
    move_lower: bool,
    seed: int,
    noise_mode: int,
    output_mode: int,
    interp: int,
    min_counts: float,
    out_dtype: torch.dtype,
    backend: str,
) -> torch.Tensor:
    """Fused synthesis (see :func:`lsn_fast.reference.synthesize_reference`). Returns (B,1,H,W)."""
    _, fn = _resolve("synthesize", soft.device, backend)
    return fn(
        soft, upper, lower, index, disp, params,
        move_lower=move_lower, seed=_seed_unsigned(seed), sample_index=sample_index,
        noise_mode=noise_mode, output_mode=output_mode, interp=_INTERP_NAMES[interp],
        min_counts=min_counts, out_dtype=out_dtype,
    )


@synthesize_op.register_fake
def _(soft, upper, lower, index, disp, params, sample_index, move_lower, seed, noise_mode,
      output_mode, interp, min_counts, out_dtype, backend):
    B = index.shape[0]
    return soft.new_empty((B, 1, soft.shape[1], soft.shape[2]), dtype=out_dtype)


def _setup_context(ctx, inputs, output):
    (soft, upper, lower, index, disp, params, sample_index, move_lower, seed, noise_mode,
     output_mode, interp, min_counts, out_dtype, backend) = inputs
    ctx.save_for_backward(soft, upper, lower, index, disp, params, sample_index)
    ctx.flags = (move_lower, seed, noise_mode, output_mode, interp, min_counts, out_dtype)


def _backward(ctx, grad_out):
    soft, upper, lower, index, disp, params, sample_index = ctx.saved_tensors
    move_lower, seed, noise_mode, output_mode, interp, min_counts, out_dtype = ctx.flags
    want = ctx.needs_input_grad
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(bool(w)) for t, w in zip((soft, upper, lower, disp), (want[0], want[1], want[2], want[4]))]
        out = synthesize_reference(
            leaves[0], leaves[1], leaves[2], index, leaves[3], params,
            move_lower=move_lower, seed=_seed_unsigned(seed), sample_index=sample_index,
            noise_mode=noise_mode, output_mode=output_mode, interp=_INTERP_NAMES[interp],
            min_counts=min_counts, out_dtype=torch.float32,
        )
        wrt = [t for t in leaves if t.requires_grad]
        grads = torch.autograd.grad(out, wrt, grad_out.to(out.dtype), allow_unused=True) if wrt else []
    it = iter(grads)
    g = [next(it) if t.requires_grad else None for t in leaves]
    return g[0], g[1], g[2], None, g[3], None, None, None, None, None, None, None, None, None, None


synthesize_op.register_autograd(_backward, setup_context=_setup_context)
