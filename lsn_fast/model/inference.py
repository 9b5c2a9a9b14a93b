"""Fast LSN inference: fused kernels, channels-last bf16 and CUDA graphs (issue 4, item 5).

:class:`FastSeparator` wraps a trained :class:`lsn_fast.LSN` for repeated inference at one input
shape, which is how a synthesis pipeline or a benchmark calls it:

* the model's GroupNorm+SiLU pairs and its recomposition head run as fused Triton kernels
  (:meth:`LSN.fuse`, :mod:`lsn_fast.fused`) where Triton is available;
* activations are channels-last and the convolutions run under bf16 autocast on CUDA (cuDNN's
  fastest layout on tensor cores; on the CPU on request, where oneDNN uses AMX / AVX512-BF16);
  outputs stay float32; ``float32_tail`` keeps the full-resolution head and refiner in float32,
  which buys back most of the accuracy that bf16 costs (:meth:`LSN.set_float32_tail`);
* on CUDA the whole forward is captured once in a CUDA graph and replayed (one launch instead of
  a few hundred small ones: at batch 64 of 256² the launch overhead is a visible share).

Every switch can be turned off, so the benchmark can attribute the speed-up to each of them.
"""

from __future__ import annotations

import torch

from lsn_fast.model.lsn import LSN, LSNOutput

__all__ = ["FastSeparator"]


class FastSeparator:
    """Repeated LSN inference at a fixed input shape.

    Args:
        model: a trained :class:`LSN`. The runner takes it over and configures it in place:
            moved to ``device``, eval mode, channels-last weights when ``channels_last``,
            :meth:`LSN.fuse` and :meth:`LSN.set_float32_tail`; the weights' values are not
            changed. Pass ``copy.deepcopy(model)`` to keep the original as it was (two runners
            sharing one model share these settings).
        batch_size, height, width: the input shape (B,1,H,W) this runner serves (H, W divisible by
            ``model.config.multiple``). Smaller batches are padded; other shapes raise.
        device: where to run (default: the model's device).
        dtype: autocast dtype for the convolutions: ``"auto"`` (bf16 on CUDA, float32 on the CPU),
            ``torch.bfloat16`` / ``torch.float16`` (on any device), or ``None`` for float32. On a
            CPU with AMX (Sapphire Rapids Xeon, 1 thread, batch 8 of 256², shipped weights) bf16
            takes 46 ms per image against 101 ms in float32, 63 ms with ``float32_tail``.
        channels_last: channels-last activations and weights.
        fused: use the fused Triton kernels (when available on ``device``).
        fused_convs: also run the 3×3 convolutions after each normalization / activation as
            fused normalize-activate-convolve kernels (``LSN.fuse(convs=True)``); needs ``fused``.
        cuda_graph: capture and replay a CUDA graph (CUDA only).
        float32_tail: under a reduced ``dtype``, compute the head convolution and the refiner in
            float32 (:meth:`LSN.set_float32_tail`: on 8 held-out phantoms the recomposition error
            is 1.347 % in float32, 1.380 % all-bf16, 1.349 % bf16 with this tail).

    Call it with a (B',1,H,W) tensor, B' <= batch_size; it returns an :class:`LSNOutput` whose
    tensors are fresh float32 tensors (not views of the graph's static buffers).
    """

    def __init__(self, model: LSN, batch_size: int, height: int, width: int, *, device=None,
                 dtype: torch.dtype | str | None = "auto", channels_last: bool = True, fused: bool = True,
                 cuda_graph: bool = True, fused_convs: bool = False, float32_tail: bool = False):
        if not isinstance(model, LSN):
            raise TypeError(f"model: expected an lsn_fast.LSN, got {type(model).__name__}")
        for name, v in (("batch_size", batch_size), ("height", height), ("width", width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        m = model.config.multiple
        if height % m or width % m:
            raise ValueError(f"height/width: must be divisible by {m}, got {height}x{width}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.shape = (batch_size, 1, height, width)
        on_cuda = self.device.type == "cuda"
        if dtype == "auto":
            dtype = torch.bfloat16 if on_cuda else None
        if dtype not in (None, torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype: expected 'auto', torch.bfloat16, torch.float16, torch.float32 or None, got {dtype!r}")
        self.dtype = None if dtype == torch.float32 else dtype
        self.model.set_float32_tail(float32_tail)
        self.channels_last = channels_last
        self.fused = fused
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if fused_convs and not fused:
            raise ValueError("fused_convs: needs fused=True")
        self.fused_convs = fused_convs
        self.model.fuse(fused, convs=fused_convs)
        self.graph = None
        if cuda_graph and on_cuda:
            self._capture()

    def _forward(self, x: torch.Tensor) -> LSNOutput:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                                             enabled=self.dtype is not None):
            return self.model(x, validate=False)

    def _capture(self):
        self.static_in = torch.zeros(self.shape, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up on a side stream (cuDNN autotuning, Triton compiles)
            for _ in range(3):
                self._forward(self.static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = self._forward(self.static_in)

    def __call__(self, images: torch.Tensor) -> LSNOutput:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1:] != self.shape[1:] \
                or not 1 <= images.shape[0] <= self.shape[0]:
            raise ValueError(f"images: expected (B,{self.shape[1]},{self.shape[2]},{self.shape[3]}) with "
                             f"1 <= B <= {self.shape[0]}, got {tuple(getattr(images, 'shape', ()))}")
        n = images.shape[0]
        if self.graph is None:
            out = self._forward(images.to(self.device))
            return LSNOutput(out.layers.float(), out.denoised.float(), out.seg_logits.float())
        self.static_in[:n].copy_(images)
        if n < self.shape[0]:
            self.static_in[n:].zero_()
        self.graph.replay()
        o = self.static_out
        return LSNOutput(o.layers[:n].float().clone(), o.denoised[:n].float().clone(), o.seg_logits[:n].float().clone())
