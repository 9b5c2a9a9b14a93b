"""The ``cuda`` backend: the fused synthesis operator in CUDA C++ (csrc/cuda, ``lsn_fast._cuda``).

Built only where nvcc exists and ``LSN_FAST_BUILD_CUDA=1`` (see setup.py); importing this module
raises ImportError otherwise, which the registry treats as "backend not available".

The kernels take raw device pointers, element strides (non-contiguous banks are read in place,
no copy) and the caller's current stream. Arguments arrive validated by :mod:`lsn_fast.ops.schema`
(devices, dtypes, shapes, index bounds, parameter ranges), so a bad argument is a Python error,
never a fault; this module only builds pointers and launches.

Paths (csrc/cuda/synthesize.cu):

* params is None: one per-pixel kernel (noiseless attenuation).
* no scatter and a detector-blur radius ``ceil(3σ) <= MAX_FUSED_RADIUS`` (σ <= 5.33 px): one fused
  tile kernel (gather, shift, Beer–Lambert, Philox noise, blur with a shared-memory halo,
  electronic noise, output).
* any scatter > 0 or a larger blur: a multi-pass path in CUDA (expected counts to a float32
  workspace, Gaussian passes in global memory with the reference's tap weights, noise, finish);
  exact, slower.

One host synchronisation per call (in :func:`lsn_fast.ops.schema.prepare`): the per-batch maxima
that size the launch (blur radius, scatter) and the bounds are read back together.
"""

from __future__ import annotations


import torch

try:
    from lsn_fast import _cuda as _ext
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(
        "lsn_fast._cuda is not built: build on a machine with nvcc and a CUDA torch with "
        "LSN_FAST_BUILD_CUDA=1 pip install -e . (or python setup.py build_ext --inplace)"
    ) from e

from lsn_fast.ops.schema import DTYPE_CODES, INTERP_CODES, SynthesizeArgs, prepare
from lsn_fast.physics.reference import gaussian_weights

MAX_FUSED_RADIUS = int(_ext.MAX_FUSED_RADIUS)


def launch(a: SynthesizeArgs) -> torch.Tensor:
    """Launch the CUDA kernels on validated arguments (:func:`lsn_fast.ops.schema.prepare`)."""
    if a.soft.device.type != "cuda":
        raise ValueError(f"soft: the cuda backend needs CUDA tensors, got device {a.soft.device}")
    out, kw, keep = _pointers(a)
    with torch.cuda.device(a.soft.device):
        stream = torch.cuda.current_stream(a.soft.device).cuda_stream
        _ext.synthesize(**kw, stream=int(stream))
    del keep
    return out


def synthesize_cuda(soft, upper, lower, index, disp, params, **kwargs) -> torch.Tensor:
    """The fused operator on CUDA tensors; same signature and results as
    :func:`lsn_fast.physics.reference.synthesize_reference` (docs/kernel_contract.md)."""
    return launch(prepare(soft, upper, lower, index, disp, params, **kwargs))


def emulate_on_host(soft, upper, lower, index, disp, params, **kwargs) -> torch.Tensor:
    """Run the CUDA kernels' code on the host, block by block and thread by thread, on CPU tensors
    (same signature as :func:`synthesize_cuda`). Slow; it lets a machine without a GPU test the
    kernels' indexing, tiling and arithmetic against the reference."""
    if soft.device.type != "cpu":
        raise ValueError(f"soft: host emulation needs CPU tensors, got device {soft.device}")
    out, kw, keep = _pointers(prepare(soft, upper, lower, index, disp, params, **kwargs))
    _ext.synthesize(**kw, stream=0, host_emulation=True)
    del keep
    return out


def _pointers(a: SynthesizeArgs):
    """Allocate the output (and the multi-pass workspace) and build the extension's arguments.
    Returns (out, kwargs, keep): hold ``keep`` (the tensors behind the pointers) until the launch
    returns."""
    dev = a.soft.device
    N, H, W = a.shape
    B = a.batch
    params = a.params
    fused_radius, multipass, use_scatter = 0, False, False
    workspace = blur_w = scatter_w = None
    blur_R = scatter_R = 0
    if params is not None:
        use_scatter = a.any_scatter
        fused_radius = a.blur_radius
        if use_scatter or fused_radius > MAX_FUSED_RADIUS:
            multipass = True
            workspace = torch.empty((3, B, H, W), device=dev, dtype=torch.float32)
            blur_w, blur_R = gaussian_weights(params[:, 3])
            blur_w = blur_w.contiguous()
            if use_scatter:
                scatter_w, scatter_R = gaussian_weights(params[:, 2])
                scatter_w = scatter_w.contiguous()

    out = torch.empty((B, 1, H, W), device=dev, dtype=a.out_dtype)
    layers = (a.soft, a.upper, a.lower)
    strides = [int(st) for t in layers for st in t.stride()]

    def ptr(t):
        return 0 if t is None else int(t.data_ptr())

    kw = dict(
        soft=ptr(a.soft), upper=ptr(a.upper), lower=ptr(a.lower), strides=strides,
        storage_dtype=DTYPE_CODES[a.soft.dtype], n_bank=N, H=H, W=W, index=ptr(a.index), disp=ptr(a.disp),
        params=ptr(params), sample_index=ptr(a.sample_index), B=B, move_lower=a.move_lower,
        seed=a.seed, noise_mode=a.noise_mode, output_mode=a.output_mode,
        interp=INTERP_CODES[a.interp], min_counts=a.min_counts, out=ptr(out),
        out_dtype=DTYPE_CODES[a.out_dtype], fused_radius=fused_radius, multipass=multipass,
        workspace=ptr(workspace), blur_weights=ptr(blur_w), blur_radius=int(blur_R),
        scatter_weights=ptr(scatter_w), scatter_radius=int(scatter_R), use_scatter=bool(use_scatter),
    )
    # The tensors behind the pointers: the caller holds them until the launch is queued (the
    # caching allocator then orders any reuse after the kernels on the same stream).
    keep = (layers, a, out, workspace, blur_w, scatter_w)
    return out, kw, keep


OPS = {"synthesize": synthesize_cuda, "synthesize_args": launch}
