"""Bytes an LSN forward pass moves through memory, per execution path: the prediction behind the
fused kernels (issue 4, item 5), written before any GPU run.

The LSN's full-resolution levels have 12-32 channels: their 3x3 convolutions do ~10-30 FLOP per
byte, below an H100's ~300 FLOP/byte ridge, so the network is bound by memory traffic, not by
tensor-core FLOPs, and the speed of a path should follow the bytes it moves. This script counts
them from the model's own module calls (forward hooks on a small CPU run, scaled to the asked
size), for bf16 activations:

* ``eager-bf16``: autocast as PyTorch runs it: GroupNorm in float32 (a cast in, float32 out),
  SiLU on float32, a cast back for the convolution, eager residual add, interpolate and cat;
* ``fused``: GroupNorm+SiLU as one kernel (2 reads + 1 write), cuDNN convolutions, eager add,
  interpolate and cat (``FastSeparator``'s default path);
* ``fused-conv``: :func:`lsn_fast.fused.conv3x3_act` everywhere it applies: per ResBlock half one
  statistics read, one convolution read and one write; the residual read in the second half's
  epilogue; the decoder's upsampling read from the half-size tensor.

Weights, the attention block's tokens (1/16 resolution) and launch overheads are left out. The
predicted time is bytes over the bandwidth given (``--bw``, default 3.35e12 B/s, an H100 SXM's
nominal figure; the GPU suite measures the real copy bandwidth).

    python benchmarks/lsn_traffic.py --model shipped --batch 64 --size 256
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from bench_lsn import load_model  # benchmarks/ is on sys.path: this runs as a script or beside bench_lsn_kernels
from lsn_fast.model.lsn import LSN, ResBlock


def module_calls(model: LSN, size: int) -> list[tuple[str, nn.Module, tuple, tuple]]:
    """(kind, module, input shape, output shape) of every ResBlock, decoder upsampling conv,
    head and refiner conv, in call order, for one (1,1,size,size) input."""
    calls = []
    ups = set(map(id, model.up))
    refine = set(map(id, model.refine.net)) if model.refine is not None else set()

    def hook(kind):
        return lambda m, i, o: calls.append((kind, m, tuple(i[0].shape), tuple(o.shape)))

    handles = []
    for m in model.modules():
        if isinstance(m, ResBlock):
            handles.append(m.register_forward_hook(hook("res")))
        elif id(m) in ups:
            handles.append(m.register_forward_hook(hook("up")))
        elif id(m) in refine and isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(hook("refine")))
    handles.append(model.head.register_forward_hook(hook("head")))
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return calls


def traffic(model: LSN, batch: int, size: int, e: int = 2) -> dict[str, float]:
    """Bytes per forward pass for each path; ``e`` = bytes per activation element (2: bf16)."""
    n = lambda shape: batch * shape[1] * shape[2] * shape[3]  # noqa: E731 - elements at the batch
    paths = {"eager-bf16": 0.0, "fused": 0.0, "fused-conv": 0.0}
    dec = set(map(id, model.dec))
    for kind, m, si, so in module_calls(model, size):
        x, y = n(si), n(so)
        if kind == "res":
            h = y  # c1's output has cout channels at the same size
            skip = 0 if isinstance(m.skip, nn.Identity) else (x + y) * e  # 1x1 conv: read x, write
            cat = 2 * x * e if id(m) in dec else 0  # torch.cat: read both halves, write the whole
            # autocast: GN casts bf16 -> f32 (r e, w 4), stats+normalize (r 4 twice, w 4), SiLU (r 4, w 4),
            # conv casts f32 -> bf16 (r 4, w e), conv (r e, w e)
            gn_eager = lambda t: t * (e + 4 + 4 + 4 + 4 + 4 + 4 + 4 + e)  # noqa: E731
            paths["eager-bf16"] += cat + gn_eager(x) + (x + h) * e + gn_eager(h) + 2 * h * e + skip + 3 * y * e
            paths["fused"] += cat + 3 * x * e + (x + h) * e + 3 * h * e + 2 * h * e + skip + 3 * y * e
            paths["fused-conv"] += cat + 2 * x * e + h * e + 2 * h * e + skip + 2 * y * e
        elif kind == "up":  # interpolate (r x, w 4x) then conv (r 4x, w y); fused: r x, w y
            paths["eager-bf16"] += (x + 4 * x + 4 * x + y) * e
            paths["fused"] += (x + 4 * x + 4 * x + y) * e
            paths["fused-conv"] += (x + y) * e
        elif kind == "head":  # head_norm + SiLU + conv, as a ResBlock half
            paths["eager-bf16"] += x * (e + 4 * 6 + e) + (x + y) * e
            paths["fused"] += 3 * x * e + (x + y) * e
            paths["fused-conv"] += 2 * x * e + y * e
        elif kind == "refine":  # conv (+ SiLU before the next one, eager)
            silu = 2 * x * e if si[1] != 5 else 0
            paths["eager-bf16"] += silu + (x + y) * e
            paths["fused"] += silu + (x + y) * e
            paths["fused-conv"] += (x + y) * e
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default,shipped", help="comma-separated: tiny | small | default | shipped")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--bw", type=float, default=3.35e12, help="memory bandwidth, B/s")
    args = ap.parse_args(argv)
    probe = 64  # the hooks run at 64x64 and the counts scale with the pixel count
    for spec in args.model.split(","):
        model = load_model(spec)
        t = traffic(model.eval(), args.batch, probe)
        scale = (args.size / probe) ** 2
        print(f"{spec} ({model.num_parameters / 1e6:.2f} M parameters), batch {args.batch} at {args.size}^2, bf16:")
        base = t["fused"]
        for k, v in t.items():
            v *= scale
            print(f"  {k:<11} {v / 1e9:7.2f} GB   {v / args.bw * 1e3:7.2f} ms at {args.bw / 1e12:.2f} TB/s"
                  f"   {base * scale / v:5.2f}x of fused")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
