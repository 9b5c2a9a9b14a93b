"""The ``cuda`` backend: the fused synthesis operator in CUDA C++ (csrc/cuda, ``lsn_fast._cuda``).

Built only where nvcc exists and ``LSN_FAST_BUILD_CUDA=1`` (see setup.py); importing this module
raises ImportError otherwise, which the registry treats as "backend not available".

The kernels take raw device pointers, element strides (non-contiguous banks are read in place,
no copy) and the caller's current stream. This wrapper validates what a kernel could trip over
(devices, dtypes, shapes, index bounds) before launching, so a bad argument is a Python error,
never a fault.

Paths (csrc/cuda/synthesize.cu):

* params is None: one per-pixel kernel (noiseless attenuation).
* no scatter and a detector-blur radius ``ceil(3σ) <= MAX_FUSED_RADIUS`` (σ <= 5.33 px): one fused
  tile kernel (gather, shift, Beer–Lambert, Philox noise, blur with a shared-memory halo,
  electronic noise, output).
* any scatter > 0 or a larger blur: a multi-pass path in CUDA (expected counts to a float32
  workspace, Gaussian passes in global memory with the reference's tap weights, noise, finish);
  exact, slower.

One host synchronisation per call: the per-batch maxima that size the launch (blur radius,
scatter) and the index bounds are read back together.
"""

from __future__ import annotations

import math

import torch

try:
    from lsn_fast import _cuda as _ext
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(
        "lsn_fast._cuda is not built: build on a machine with nvcc and a CUDA torch with "
        "LSN_FAST_BUILD_CUDA=1 pip install -e . (or python setup.py build_ext --inplace)"
    ) from e

from lsn_fast.physics.reference import INTERP_MODES, gaussian_weights

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
MAX_FUSED_RADIUS = int(_ext.MAX_FUSED_RADIUS)


def _i64(t: torch.Tensor, device) -> torch.Tensor:
    return t.to(device=device, dtype=torch.int64).contiguous()


def synthesize_cuda(
    soft: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    index: torch.Tensor,
    disp: torch.Tensor,
    params: torch.Tensor | None,
    *,
    move_lower: bool = False,
    seed: int = 0,
    sample_index: torch.Tensor | None = None,
    noise_mode: int = 2,
    output_mode: int = 0,
    interp: str = "linear",
    min_counts: float = 0.5,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The fused operator on CUDA tensors; same signature and results as
    :func:`lsn_fast.reference.synthesize_reference` (docs/kernel_contract.md)."""
    if soft.device.type != "cuda":
        raise ValueError(f"soft: the cuda backend needs CUDA tensors, got device {soft.device}")
    out, kw, keep = _prepare(soft, upper, lower, index, disp, params, move_lower=move_lower, seed=seed,
                             sample_index=sample_index, noise_mode=noise_mode, output_mode=output_mode,
                             interp=interp, min_counts=min_counts, out_dtype=out_dtype)
    with torch.cuda.device(soft.device):
        stream = torch.cuda.current_stream(soft.device).cuda_stream
        _ext.synthesize(**kw, stream=int(stream))
    del keep
    return out


def emulate_on_host(soft, upper, lower, index, disp, params, **kwargs) -> torch.Tensor:
    """Run the CUDA kernels' code on the host, block by block and thread by thread, on CPU tensors
    (same signature as :func:`synthesize_cuda`). Slow; it lets a machine without a GPU test the
    kernels' indexing, tiling and arithmetic against the reference."""
    if soft.device.type != "cpu":
        raise ValueError(f"soft: host emulation needs CPU tensors, got device {soft.device}")
    out, kw, keep = _prepare(soft, upper, lower, index, disp, params, **kwargs)
    _ext.synthesize(**kw, stream=0, host_emulation=True)
    del keep
    return out


def _prepare(soft, upper, lower, index, disp, params, *, move_lower=False, seed=0, sample_index=None,
             noise_mode=2, output_mode=0, interp="linear", min_counts=0.5, out_dtype=torch.float32):
    """Validate, allocate the output (and the multi-pass workspace) and build the extension's
    arguments. Returns (out, kwargs, keep): hold ``keep`` (the tensors behind the pointers) until
    the launch returns."""
    dev = soft.device
    for name, t in (("upper", upper), ("lower", lower)):
        if t.device != dev:
            raise ValueError(f"{name}: on {t.device}, expected {dev} (like soft)")
    if soft.ndim != 3 or upper.shape != soft.shape or lower.shape != soft.shape:
        raise ValueError(f"soft, upper, lower: expected three (N,H,W) tensors of one shape, got "
                         f"{tuple(soft.shape)}, {tuple(upper.shape)}, {tuple(lower.shape)}")
    layers = [soft, upper, lower]
    dtypes = {t.dtype for t in layers}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _DTYPE_CODES:
        layers = [t.to(torch.float32) for t in layers]  # mixed or other float dtypes: compute in float32
    storage = _DTYPE_CODES[layers[0].dtype]
    if out_dtype not in _DTYPE_CODES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype}")
    if interp not in INTERP_MODES:
        raise ValueError(f"interp: expected 'linear' or 'cubic', got {interp!r}")
    if noise_mode not in (0, 1, 2):
        raise ValueError(f"noise_mode: expected 0, 1 or 2, got {noise_mode!r}")
    if output_mode not in (0, 1):
        raise ValueError(f"output_mode: expected 0 or 1, got {output_mode!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed: must lie in [0, 2**64), got {seed}")
    N, H, W = (int(v) for v in soft.shape)
    if H * W >= 2**31:
        raise ValueError(f"soft: H*W = {H * W} too large (the Philox pixel counter is 32-bit)")

    index = _i64(index, dev)
    if index.ndim != 1 or index.numel() == 0:
        raise ValueError(f"index: expected a non-empty (B,) tensor, got {tuple(index.shape)}")
    B = index.shape[0]
    disp = disp.to(device=dev, dtype=torch.float32).contiguous()
    if disp.shape != (B, 2):
        raise ValueError(f"disp: expected shape ({B}, 2), got {tuple(disp.shape)}")
    if sample_index is None:
        sample_index = torch.arange(B, device=dev, dtype=torch.int64)
    sample_index = _i64(sample_index, dev)
    if sample_index.shape != (B,):
        raise ValueError(f"sample_index: expected shape ({B},), got {tuple(sample_index.shape)}")
    if params is not None:
        params = params.to(device=dev, dtype=torch.float32).contiguous()
        if params.shape != (B, 5):
            raise ValueError(f"params: expected shape ({B}, 5), got {tuple(params.shape)}")

    # One device -> host read: index bounds, sample_index sign, per-column maxima of params
    # (ceil(3σ) is monotonic in σ, so the largest blur radius is ceil(3 · max σ)).
    parts = [torch.stack(torch.aminmax(index)).to(torch.float64), sample_index.min().to(torch.float64).view(1)]
    if params is not None:
        parts.append(params.amax(0).to(torch.float64))
    stats = torch.cat(parts).tolist()
    if stats[0] < 0 or stats[1] >= N:
        raise ValueError(f"index: values must lie in [0, {N}), got [{int(stats[0])}, {int(stats[1])}]")
    if stats[2] < 0:
        raise ValueError("sample_index: must be >= 0")

    fused_radius, multipass, use_scatter = 0, False, False
    workspace = blur_w = scatter_w = None
    blur_R = scatter_R = 0
    if params is not None:
        if not all(math.isfinite(v) for v in stats[3:]):
            raise ValueError("params: must be finite")
        use_scatter = stats[4] > 0
        # float32 arithmetic, as the kernel: ceil(3.0f * sigma)
        fused_radius = int(torch.ceil(torch.tensor(3.0, dtype=torch.float32) * torch.tensor(stats[6], dtype=torch.float32)))
        if use_scatter or fused_radius > MAX_FUSED_RADIUS:
            multipass = True
            workspace = torch.empty((3, B, H, W), device=dev, dtype=torch.float32)
            blur_w, blur_R = gaussian_weights(params[:, 3])
            blur_w = blur_w.contiguous()
            if use_scatter:
                scatter_w, scatter_R = gaussian_weights(params[:, 2])
                scatter_w = scatter_w.contiguous()

    out = torch.empty((B, 1, H, W), device=dev, dtype=out_dtype)
    strides = [int(st) for t in layers for st in t.stride()]

    def ptr(t):
        return 0 if t is None else int(t.data_ptr())

    kw = dict(
        soft=ptr(layers[0]), upper=ptr(layers[1]), lower=ptr(layers[2]), strides=strides,
        storage_dtype=storage, n_bank=N, H=H, W=W, index=ptr(index), disp=ptr(disp),
        params=ptr(params), sample_index=ptr(sample_index), B=B, move_lower=bool(move_lower),
        seed=int(seed), noise_mode=int(noise_mode), output_mode=int(output_mode),
        interp=INTERP_MODES[interp], min_counts=float(min_counts), out=ptr(out),
        out_dtype=_DTYPE_CODES[out_dtype], fused_radius=fused_radius, multipass=multipass,
        workspace=ptr(workspace), blur_weights=ptr(blur_w), blur_radius=int(blur_R),
        scatter_weights=ptr(scatter_w), scatter_radius=int(scatter_R), use_scatter=bool(use_scatter),
    )
    # The tensors behind the pointers: the caller holds them until the launch is queued (the
    # caching allocator then orders any reuse after the kernels on the same stream).
    keep = (layers, index, disp, params, sample_index, workspace, blur_w, scatter_w)
    return out, kw, keep


OPS = {"synthesize": synthesize_cuda}
