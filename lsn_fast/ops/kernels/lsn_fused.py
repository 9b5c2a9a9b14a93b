"""Fused Triton kernels for the LSN's non-GEMM hot spots (inference).

Profiled shape of the work (issue 4): every ResBlock runs ``GroupNorm -> SiLU`` twice and ends in a
residual add; the head runs ``GroupNorm -> SiLU -> conv -> relu(y + r) * softmax(z)``. In eager
PyTorch each of these is its own pass over the activations (GroupNorm reads twice and writes once,
SiLU reads and writes, the add reads two and writes one, the head's recomposition is ~6 small
kernels). Fused here:

* :func:`group_norm_act` — GroupNorm (+ affine) + optional SiLU, for NCHW-contiguous or channels-last activations, fp32/fp16/bf16 storage, fp32 statistics.
  Two kernels: ``_gn_stats_kernel`` writes per-chunk (count, mean, M2) partials (so a large group
  is spread over many programs), ``_gn_apply_kernel`` merges the partials of its group (Chan et
  al.'s parallel variance: no E[x²] − E[x]² cancellation), normalizes, activates and stores.
  Traffic: 2 reads + 1 write of x (the stats pass re-reads its chunk from cache) instead of
  eager's GroupNorm (2 reads + 1 write) followed by SiLU (1 read + 1 write).
* :func:`recompose_head` — ``D = relu(y + r)``, ``layers = D * softmax(z over 3 channels)`` from the
  head's 6-channel output: one read of (y, head) and one write of (layers, D) instead of ~6 passes.
  With a refiner's correction c it computes ``D = relu(relu(y + r) + c)`` in the same pass.
* :func:`refine_input` — the :class:`~lsn_fast.lsn.DenoiseRefiner`'s input ``[y, relu(y + r),
  softmax(z)]`` written straight into one 5-channel tensor in the convolution's dtype and memory
  format, instead of relu + softmax + ``torch.cat`` + casts. A refined model's head is then these
  two kernels around the refiner's convolutions.

* :func:`conv3x3_act` — a 3×3 convolution as 9 shifted ``tl.dot`` tiles per program, with the
  GroupNorm (folded into per-sample, per-channel scale and shift by ``_gn_affine_kernel`` from
  ``_gn_stats_kernel``'s partials) and SiLU applied to the input as it is loaded, the zero padding
  after them, a nearest 2x upsampling of the input as an address change, and the bias and a
  residual added before the one store.

All are pure functions over pointers and strides; validation and dispatch live in
:mod:`lsn_fast.fused` (which also holds the eager references the tests compare against).
They run compiled on CUDA and, for the tests, under ``TRITON_INTERPRET=1`` on CPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


# ------------------------------------------------------------------------------ GroupNorm
@triton.jit
def _group_coords(e, g, CPG, HW, CH_INNER: tl.constexpr):
    """(channel, pixel) of element numbers ``e`` of group g. Channels-last (CH_INNER) walks channels
    innermost so consecutive elements are adjacent in memory; NCHW walks pixels innermost."""
    if CH_INNER:
        c = e % CPG
        p = e // CPG
    else:
        c = e // HW
        p = e % HW
    return g * CPG + c, p


@triton.jit
def _offset(b, c, p, sB, sC, sP):
    return b.to(tl.int64) * sB + c.to(tl.int64) * sC + p.to(tl.int64) * sP


@triton.jit
def _gn_stats_kernel(x_ptr, part_ptr, G, CPG, HW, sB, sC, sP, CHUNK, N_CHUNKS,
                     BLOCK: tl.constexpr, CH_INNER: tl.constexpr):
    """Program (b·G + g, k): count, mean and M2 of elements [k·CHUNK, (k+1)·CHUNK) of group (b, g)."""
    bg = tl.program_id(0)
    k = tl.program_id(1)
    b = bg // G
    g = bg % G
    n = CPG * HW
    lo = k * CHUNK
    hi = tl.minimum(lo + CHUNK, n)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for s in range(lo, hi, BLOCK):
        e = s + tl.arange(0, BLOCK)
        c, p = _group_coords(e, g, CPG, HW, CH_INNER)
        acc += tl.load(x_ptr + _offset(b, c, p, sB, sC, sP), mask=e < hi, other=0.0).to(tl.float32)
    cnt = (hi - lo).to(tl.float32)
    mean = tl.sum(acc, axis=0) / cnt
    acc2 = tl.zeros([BLOCK], dtype=tl.float32)
    for s in range(lo, hi, BLOCK):  # second pass over the chunk: it is still in L1/L2
        e = s + tl.arange(0, BLOCK)
        c, p = _group_coords(e, g, CPG, HW, CH_INNER)
        v = tl.load(x_ptr + _offset(b, c, p, sB, sC, sP), mask=e < hi, other=0.0).to(tl.float32)
        d = tl.where(e < hi, v - mean, 0.0)
        acc2 += d * d
    base = part_ptr + (bg * N_CHUNKS + k) * 3
    tl.store(base, cnt)
    tl.store(base + 1, mean)
    tl.store(base + 2, tl.sum(acc2, axis=0))


@triton.jit
def _merge_partials(part_ptr, bg, N_CHUNKS, eps, KP: tl.constexpr):
    """(mean, rstd) of group ``bg`` from its N_CHUNKS (count, mean, M2) partials: Chan et al.'s
    parallel merge (KP >= N_CHUNKS, a power of two), no E[x²] − E[x]² cancellation."""
    j = tl.arange(0, KP)
    pm = j < N_CHUNKS
    pb = part_ptr + (bg * N_CHUNKS + j) * 3
    cnt = tl.load(pb, mask=pm, other=0.0)
    mu = tl.load(pb + 1, mask=pm, other=0.0)
    m2 = tl.load(pb + 2, mask=pm, other=0.0)
    total = tl.sum(cnt, axis=0)
    mean = tl.sum(cnt * mu, axis=0) / total
    dm = tl.where(pm, mu - mean, 0.0)
    var = (tl.sum(m2, axis=0) + tl.sum(cnt * dm * dm, axis=0)) / total
    return mean, 1.0 / tl.sqrt(var + eps)


@triton.jit
def _gn_apply_kernel(x_ptr, part_ptr, w_ptr, b_ptr, out_ptr,
                     G, CPG, HW, sB, sC, sP, oB, oC, oP, CHUNK, N_CHUNKS, eps,
                     BLOCK: tl.constexpr, KP: tl.constexpr, CH_INNER: tl.constexpr,
                     SILU: tl.constexpr, AFFINE: tl.constexpr):
    """Program (b·G + g, k): merge group (b, g)'s partials, then normalize + activate its chunk k."""
    bg = tl.program_id(0)
    k = tl.program_id(1)
    b = bg // G
    g = bg % G
    mean, rstd = _merge_partials(part_ptr, bg, N_CHUNKS, eps, KP)
    n = CPG * HW
    lo = k * CHUNK
    hi = tl.minimum(lo + CHUNK, n)
    for s in range(lo, hi, BLOCK):
        e = s + tl.arange(0, BLOCK)
        m = e < hi
        c, p = _group_coords(e, g, CPG, HW, CH_INNER)
        v = (tl.load(x_ptr + _offset(b, c, p, sB, sC, sP), mask=m, other=0.0).to(tl.float32) - mean) * rstd
        if AFFINE:
            v = v * tl.load(w_ptr + c, mask=m, other=1.0).to(tl.float32) + tl.load(b_ptr + c, mask=m, other=0.0).to(tl.float32)
        if SILU:  # v * sigmoid(v) with exp(-|v|): no overflow for very negative v
            ez = tl.exp(-tl.abs(v))
            v = v * tl.where(v >= 0, 1.0, ez) / (1.0 + ez)
        tl.store(out_ptr + _offset(b, c, p, oB, oC, oP), v.to(out_ptr.dtype.element_ty), mask=m)


def _flat_strides(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, channel, pixel) strides of a (B,C,H,W) tensor whose H,W dims flatten to one index."""
    B, C, H, W = t.shape
    if H > 1 and W > 1 and t.stride(2) != W * t.stride(3):
        raise ValueError("x: the H and W dimensions must flatten (NCHW-contiguous or channels-last)")
    return t.stride(0), t.stride(1), t.stride(3) if W > 1 else t.stride(2)


def _gn_partials(x: torch.Tensor, groups: int, chunk: int | None, block: int) -> tuple[torch.Tensor, int, int]:
    """Launch ``_gn_stats_kernel``: the (B·groups, n_chunks, 3) float32 (count, mean, M2) partials of
    ``x``'s groups; returns them with the chunk length used and the number of chunks."""
    B, C, H, W = x.shape
    cpg, hw = C // groups, H * W
    n = cpg * hw
    if chunk is None:  # enough programs to fill a GPU even at batch 1, chunks of >= 4 blocks
        chunk = max(4 * block, triton.cdiv(n, 64))
    chunk = triton.cdiv(chunk, block) * block
    n_chunks = triton.cdiv(n, chunk)
    sB, sC, sP = _flat_strides(x)
    part = torch.empty((B * groups, n_chunks, 3), device=x.device, dtype=torch.float32)
    _gn_stats_kernel[(B * groups, n_chunks)](x, part, groups, cpg, hw, sB, sC, sP, chunk, n_chunks, BLOCK=block,
                                             CH_INNER=sC == 1 and C > 1)
    return part, chunk, n_chunks


def group_norm_act_triton(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                          eps: float, silu: bool, chunk: int | None = None, block: int = 1024) -> torch.Tensor:
    """Launch the two GroupNorm kernels (no validation: see ``lsn_fast.fused.group_norm_act``).

    Returns a tensor shaped, strided (memory format) and typed like ``x``.
    """
    B, C, H, W = x.shape
    cpg, hw = C // groups, H * W
    part, chunk, n_chunks = _gn_partials(x, groups, chunk, block)
    sB, sC, sP = _flat_strides(x)
    ch_inner = sC == 1 and C > 1
    out = torch.empty_like(x)  # keeps x's memory format
    oB, oC, oP = _flat_strides(out)
    grid = (B * groups, n_chunks)
    _gn_apply_kernel[grid](
        x, part, weight if weight is not None else x, bias if bias is not None else x, out,
        groups, cpg, hw, sB, sC, sP, oB, oC, oP, chunk, n_chunks, float(eps),
        BLOCK=block, KP=max(2, triton.next_power_of_2(n_chunks)), CH_INNER=ch_inner,
        SILU=bool(silu), AFFINE=weight is not None,
    )
    return out


# ------------------------------------------------------------------------------ head
@triton.jit
def _load_head(y_ptr, h_ptr, b, p, m, yB, yP, hB, hC, hP):
    """y, D0 = relu(y + h0) and the three softmax fractions of (h1, h2, h3), float32."""
    hb = h_ptr + b * hB + p * hP
    y = tl.load(y_ptr + b * yB + p * yP, mask=m, other=0.0).to(tl.float32)
    r = tl.load(hb, mask=m, other=0.0).to(tl.float32)
    z1 = tl.load(hb + hC, mask=m, other=0.0).to(tl.float32)
    z2 = tl.load(hb + 2 * hC, mask=m, other=0.0).to(tl.float32)
    z3 = tl.load(hb + 3 * hC, mask=m, other=0.0).to(tl.float32)
    zm = tl.maximum(tl.maximum(z1, z2), z3)
    e1 = tl.exp(z1 - zm)
    e2 = tl.exp(z2 - zm)
    e3 = tl.exp(z3 - zm)
    s = e1 + e2 + e3  # divided, not multiplied by 1/s, as torch.softmax does
    return y, tl.maximum(y + r, 0.0), e1 / s, e2 / s, e3 / s


@triton.jit
def _recompose_kernel(y_ptr, h_ptr, c_ptr, layers_ptr, d_ptr, HW, yB, yP, hB, hC, hP, cB, cP, lB, lC, lP, dB, dP,
                      BLOCK: tl.constexpr, CORRECT: tl.constexpr):
    """D = relu(y + h0) (then D = relu(D + c) with CORRECT); layers_k = D · softmax(h1, h2, h3)_k,
    for BLOCK pixels of sample b."""
    b = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = p < HW
    p = p.to(tl.int64)
    y, d, f1, f2, f3 = _load_head(y_ptr, h_ptr, b, p, m, yB, yP, hB, hC, hP)
    if CORRECT:  # the refiner's correction, added after D0's relu as in the eager model
        d = tl.maximum(d + tl.load(c_ptr + b * cB + p * cP, mask=m, other=0.0).to(tl.float32), 0.0)
    lb = layers_ptr + b * lB + p * lP
    tl.store(lb, (f1 * d).to(layers_ptr.dtype.element_ty), mask=m)
    tl.store(lb + lC, (f2 * d).to(layers_ptr.dtype.element_ty), mask=m)
    tl.store(lb + 2 * lC, (f3 * d).to(layers_ptr.dtype.element_ty), mask=m)
    tl.store(d_ptr + b * dB + p * dP, d.to(d_ptr.dtype.element_ty), mask=m)


@triton.jit
def _refine_input_kernel(y_ptr, h_ptr, o_ptr, HW, yB, yP, hB, hC, hP, oB, oC, oP, BLOCK: tl.constexpr):
    """The refiner's 5-channel input [y, D0, p_soft, p_upper, p_lower] for BLOCK pixels of sample b."""
    b = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = p < HW
    p = p.to(tl.int64)
    y, d, f1, f2, f3 = _load_head(y_ptr, h_ptr, b, p, m, yB, yP, hB, hC, hP)
    ob = o_ptr + b * oB + p * oP
    ty = o_ptr.dtype.element_ty
    tl.store(ob, y.to(ty), mask=m)
    tl.store(ob + oC, d.to(ty), mask=m)
    tl.store(ob + 2 * oC, f1.to(ty), mask=m)
    tl.store(ob + 3 * oC, f2.to(ty), mask=m)
    tl.store(ob + 4 * oC, f3.to(ty), mask=m)


def recompose_head_triton(y: torch.Tensor, head: torch.Tensor, correction: torch.Tensor | None = None,
                          block: int = 1024):
    """Launch the recomposition kernel (no validation: see ``lsn_fast.fused.recompose_head``).

    Returns ``(layers (B,3,H,W) float32, denoised (B,1,H,W) float32)``, NCHW-contiguous.
    """
    B, _, H, W = head.shape
    hw = H * W
    layers = torch.empty((B, 3, H, W), device=head.device, dtype=torch.float32)
    den = torch.empty((B, 1, H, W), device=head.device, dtype=torch.float32)
    yB, _, yP = _flat_strides(y)
    hB, hC, hP = _flat_strides(head)
    cB, _, cP = _flat_strides(correction) if correction is not None else (0, 0, 0)
    _recompose_kernel[(B, triton.cdiv(hw, block))](
        y, head, correction if correction is not None else den, layers, den, hw, yB, yP, hB, hC, hP, cB, cP,
        3 * hw, hw, 1, hw, 1, BLOCK=block, CORRECT=correction is not None)
    return layers, den


def refine_input_triton(y: torch.Tensor, head: torch.Tensor, dtype: torch.dtype, channels_last: bool,
                        block: int = 1024) -> torch.Tensor:
    """Launch the refiner-input kernel (no validation: see ``lsn_fast.fused.refine_input``).

    Returns the (B,5,H,W) tensor ``[y, relu(y + h0), softmax(h1:4)]`` in ``dtype``, channels-last
    or NCHW-contiguous.
    """
    B, _, H, W = head.shape
    hw = H * W
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((B, 5, H, W), device=head.device, dtype=dtype, memory_format=fmt)
    yB, _, yP = _flat_strides(y)
    hB, hC, hP = _flat_strides(head)
    oB, oC, oP = _flat_strides(out)
    _refine_input_kernel[(B, triton.cdiv(hw, block))](y, head, out, hw, yB, yP, hB, hC, hP, oB, oC, oP, BLOCK=block)
    return out


# ------------------------------------------------------------------------------ normalize-activate-convolve
@triton.jit
def _gn_affine_kernel(part_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, G, CPG, N_CHUNKS, eps,
                      KP: tl.constexpr, CB: tl.constexpr, AFFINE: tl.constexpr):
    """Program b·G + g: merge group (b, g)'s partials into the per-channel
    ``scale = rstd · w`` and ``shift = beta − mean · scale`` of its CPG channels (B·C float32 each)."""
    bg = tl.program_id(0)
    g = bg % G
    mean, rstd = _merge_partials(part_ptr, bg, N_CHUNKS, eps, KP)
    k = tl.arange(0, CB)
    km = k < CPG
    c = g * CPG + k
    sc = tl.zeros([CB], dtype=tl.float32) + rstd
    sh = tl.zeros([CB], dtype=tl.float32)
    if AFFINE:
        sc = sc * tl.load(w_ptr + c, mask=km, other=1.0).to(tl.float32)
        sh = tl.load(b_ptr + c, mask=km, other=0.0).to(tl.float32)
    base = (bg // G) * G * CPG + c
    tl.store(scale_ptr + base, sc, mask=km)
    tl.store(shift_ptr + base, sh - mean * sc, mask=km)


@triton.jit
def _conv3x3_kernel(x_ptr, scale_ptr, shift_ptr, w_ptr, bias_ptr, res_ptr, out_ptr,
                    H, W, CIN, COUT, CIP, COP, sxB, sxC, sxH, sxW, srB, srC, srH, srW, soB, soC, soH, soW,
                    BLOCK_P: tl.constexpr, CI: tl.constexpr, CO: tl.constexpr,
                    NORM: tl.constexpr, SILU: tl.constexpr, RES: tl.constexpr, IEEE: tl.constexpr,
                    UPCAST: tl.constexpr, UP: tl.constexpr):
    """out[b, co, p] = conv3x3(act(x))[b, co, p] + bias (+ res) for BLOCK_P pixels p of sample b and
    CO output channels co (program axis 2 walks the output channels in tiles of CO). H, W are the
    output's size; with UP = 1 the input is half that and read nearest-upsampled (pixel (r, c) of
    the upsampled image is (r // 2, c // 2) of x), so the 4x larger upsampled tensor is never stored.

    act(x) = silu(x · scale[b] + shift[b]) with NORM (a GroupNorm folded into per-channel scale and
    shift) and/or SILU, applied as the input is loaded; the zero padding is applied after it, as
    ``conv2d(padding=1)`` pads the activated tensor. For each of the 9 taps and each tile of CI input
    channels, a (BLOCK_P, CI) x (CI, CO) ``tl.dot`` of the shifted activated pixels with that tap's
    weights (``w``: (9, CIP, COP), zero beyond CIN and COUT). Both loops run at run time: unrolled,
    the compiler keeps several taps' tiles live and spills at 64+ channels."""
    b = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    co = tl.program_id(2) * CO + tl.arange(0, CO)
    pm = p < H * W
    r = p // W
    c = p % W
    acc = tl.zeros([BLOCK_P, CO], dtype=tl.float32)
    for t in range(9):
        rr = r + (t // 3 - 1)
        cc = c + (t % 3 - 1)
        ok = pm & (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
        pix = b * sxB + (rr >> UP).to(tl.int64) * sxH + (cc >> UP).to(tl.int64) * sxW
        for k0 in range(0, CIN, CI):
            ci = k0 + tl.arange(0, CI)
            cm = ci < CIN
            m = ok[:, None] & cm[None, :]
            v = tl.load(x_ptr + pix[:, None] + ci[None, :] * sxC, mask=m, other=0.0).to(tl.float32)
            if NORM:
                sc = tl.load(scale_ptr + b * CIN + ci, mask=cm, other=0.0)
                sh = tl.load(shift_ptr + b * CIN + ci, mask=cm, other=0.0)
                v = v * sc[None, :] + sh[None, :]
            if SILU:  # v * sigmoid(v) with exp(-|v|): no overflow for very negative v
                ez = tl.exp(-tl.abs(v))
                v = v * tl.where(v >= 0, 1.0, ez) / (1.0 + ez)
            v = tl.where(m, v, 0.0)  # zero padding of the activated tensor
            wt = tl.load(w_ptr + (t * CIP + ci[:, None]) * COP + co[None, :])
            v = v.to(wt.dtype)  # the activated input is rounded to the compute dtype, as eager autocast does
            if UPCAST:  # the same products (exact in fp32) and fp32 sums, for the interpreter (see the launcher)
                acc += tl.dot(v.to(tl.float32), wt.to(tl.float32))
            elif IEEE:
                acc += tl.dot(v, wt, input_precision="ieee")
            else:
                acc += tl.dot(v, wt)
    acc += tl.load(bias_ptr + co)[None, :]
    om = pm[:, None] & (co < COUT)[None, :]
    prow = r.to(tl.int64)[:, None]
    pcol = c.to(tl.int64)[:, None]
    if RES:
        acc += tl.load(res_ptr + b * srB + prow * srH + pcol * srW + co[None, :] * srC, mask=om, other=0.0).to(tl.float32)
    tl.store(out_ptr + b * soB + prow * soH + pcol * soW + co[None, :] * soC, acc.to(out_ptr.dtype.element_ty), mask=om)


def conv_tiles(cin: int, cout: int, max_tile: int = 64) -> tuple[int, int]:
    """(CI, CO) channel tiles of the convolution kernel: powers of two, >= 16 (``tl.dot``'s
    minimum), at most ``max_tile``."""
    tile = lambda n: min(max_tile, max(16, triton.next_power_of_2(n)))  # noqa: E731
    return tile(cin), tile(cout)


def gn_scale_shift_triton(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                          eps: float, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """GroupNorm statistics of ``x`` (B,C,H,W) folded with the affine parameters into per-sample,
    per-channel ``(scale, shift)``, each (B, C) float32: ``group_norm(x) = x · scale + shift``."""
    B, C = x.shape[:2]
    cpg = C // groups
    part, _, n_chunks = _gn_partials(x, groups, None, block)
    scale = torch.empty((B, C), device=x.device, dtype=torch.float32)
    shift = torch.empty_like(scale)
    _gn_affine_kernel[(B * groups,)](part, weight if weight is not None else part, bias if bias is not None else part,
                                     scale, shift, groups, cpg, n_chunks, float(eps),
                                     KP=max(2, triton.next_power_of_2(n_chunks)), CB=max(2, triton.next_power_of_2(cpg)),
                                     AFFINE=weight is not None)
    return scale, shift


def conv_config(ci: int, co: int, dtype: torch.dtype) -> tuple[int, int]:
    """(BLOCK_P, num_warps) of the convolution kernel for channel tiles (ci, co): the smallest
    pixel tiles and warp counts whose accumulator and operands fit the registers without spilling
    on sm_90 (``scripts/compile_triton.py``, Triton 3.6 and 3.9; float32 runs its ``tl.dot`` on FMAs
    and needs more registers per element than bf16's tensor-core dot)."""
    if dtype == torch.float32:
        return (128, 8) if ci * co <= 32 * 32 else (64, 8)
    return 64, (8 if ci * co >= 64 * 64 else 4)


def conv3x3_triton(x: torch.Tensor, w9: torch.Tensor, bias: torch.Tensor, cout: int, scale: torch.Tensor | None,
                   shift: torch.Tensor | None, silu: bool, residual: torch.Tensor | None, channels_last: bool,
                   upsample: bool = False, block_p: int | None = None) -> torch.Tensor:
    """Launch the normalize-activate-convolve kernel (no validation: see ``lsn_fast.fused.conv3x3_act``).

    ``w9`` (9, CIP, COP) and ``bias`` (COP,) are the weights zero-padded to whole tiles of
    :func:`conv_tiles` (``lsn_fast.fused`` prepares them). Returns (B, cout, H, W) in ``x``'s
    dtype, channels-last or NCHW-contiguous; with ``upsample`` of the nearest 2x upsampled ``x``,
    (B, cout, 2H, 2W).
    """
    B, cin, H, W = x.shape
    if upsample:
        H, W = 2 * H, 2 * W
    ci, co = conv_tiles(cin, cout)
    bp, warps = conv_config(ci, co, w9.dtype)
    block_p = block_p or bp
    cip, cop = w9.shape[1], w9.shape[2]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((B, cout, H, W), device=x.device, dtype=x.dtype, memory_format=fmt)
    res = residual if residual is not None else out
    _conv3x3_kernel[(B, triton.cdiv(H * W, block_p), cop // co)](
        x, scale if scale is not None else bias, shift if shift is not None else bias, w9, bias, res, out,
        H, W, cin, cout, cip, cop, *x.stride(), *res.stride(), *out.stride(),
        BLOCK_P=block_p, CI=ci, CO=co, NORM=scale is not None, SILU=bool(silu), RES=residual is not None,
        IEEE=w9.dtype == torch.float32,
        # Triton's interpreter returns garbage for a bf16 tl.dot (seen with 3.9: errors of 1e10 on a
        # 16x16 product); compiled kernels use the bf16 tensor-core dot
        UPCAST=w9.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1",
        UP=1 if upsample else 0, num_warps=warps)
    return out
