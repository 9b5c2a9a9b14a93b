"""``torch.library`` registration of the fused synthesis operator.

``torch.ops.lsn_fast.synthesize`` is registered once; its implementation dispatches to the
backend named by its ``backend`` argument (resolved by :mod:`lsn_fast.backends`). A fake
(meta) implementation makes it traceable by ``torch.compile`` without graph breaks, and its
backward is the vector–Jacobian product of the differentiable reference, so every backend gets
gradients w.r.t. the layers and the displacement.

The op validates its arguments through :func:`lsn_fast.ops.schema.prepare` (cheap checks, one host
read for the value bounds) before any backend sees them: it is public and reachable, so a bad index
or parameter is a named ``ValueError``/``TypeError``, never a crash or unwritten memory.
"""

from __future__ import annotations

import torch

from lsn_fast.ops.registry import resolve
from lsn_fast.ops.schema import INTERP_NAMES, normalize_seed, prepare, seed_to_signed
from lsn_fast.physics.reference import synthesize_reference

__all__ = ["synthesize_op", "seed_to_signed"]


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
    args = prepare(soft, upper, lower, index, disp, params, move_lower=move_lower, seed=seed,
                   sample_index=sample_index, noise_mode=noise_mode, output_mode=output_mode, interp=interp,
                   min_counts=min_counts, out_dtype=out_dtype)
    _, launch = resolve("synthesize_args", soft.device, backend)
    return launch(args)


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
            move_lower=move_lower, seed=normalize_seed(seed), sample_index=sample_index,
            noise_mode=noise_mode, output_mode=output_mode, interp=INTERP_NAMES[interp],
            min_counts=min_counts, out_dtype=torch.float32,
        )
        wrt = [t for t in leaves if t.requires_grad]
        grads = torch.autograd.grad(out, wrt, grad_out.to(out.dtype), allow_unused=True) if wrt else []
    it = iter(grads)
    g = [next(it) if t.requires_grad else None for t in leaves]
    return g[0], g[1], g[2], None, g[3], None, None, None, None, None, None, None, None, None, None


synthesize_op.register_autograd(_backward, setup_context=_setup_context)
