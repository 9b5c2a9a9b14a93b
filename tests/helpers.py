"""Shared test fixtures-as-functions (importable from tests as `helpers`)."""

import torch


def rect_stack(B=2, H=48, W=40, spacing=0.1, gap_px=8.0, dtype=torch.float32, seed=0):
    """A simple stack: random soft tissue, rectangular bones with exact area coverage at the
    margins (upper bone ends at y = H/2 - gap/2, lower starts at H/2 + gap/2; edge coords)."""
    g = torch.Generator().manual_seed(seed)
    soft = 0.3 + 0.1 * torch.rand(B, H, W, generator=g)
    y = torch.arange(H, dtype=torch.float64)
    end_u = H / 2 - gap_px / 2
    start_l = H / 2 + gap_px / 2
    cov_u = (end_u - y).clamp(0, 1)  # fraction of pixel [y, y+1) above end_u
    cov_l = (y + 1 - start_l).clamp(0, 1)
    cols = torch.zeros(W, dtype=torch.float64)
    cols[W // 5 : W - W // 5] = 1.0
    upper = (0.5 * cov_u[:, None] * cols[None, :]).expand(B, H, W).to(dtype).clone()
    lower = (0.4 * cov_l[:, None] * cols[None, :]).expand(B, H, W).to(dtype).clone()
    from lsn_fast import LayerStack

    return LayerStack(soft.to(dtype), upper, lower, spacing, axis=(-1.0, 0.0))
