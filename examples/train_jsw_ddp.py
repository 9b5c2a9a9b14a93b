"""Train a small JSW regressor with DistributedDataParallel, fed by one ``lsn_fast.JSWStream`` per rank.

    torchrun --nproc_per_node 2 examples/train_jsw_ddp.py --steps 20 --size 64          # CPU, gloo
    torchrun --nproc_per_node 8 examples/train_jsw_ddp.py --device cuda --bank bank.safetensors

Each rank builds the same bank (phantoms, or ``--bank FILE``) and a stream with the same seed;
the stream shards the global sample indices by ``torch.distributed`` rank (and DataLoader worker),
so the ranks never see the same sample and a run is reproducible whatever the world size. On a
GPU the stream generates on its own CUDA stream, ``--prefetch`` batches ahead (``--workers 0``);
on the CPU use ``--workers`` DataLoader processes. ``--ckpt`` saves the model, the optimizer and
each rank's stream state; ``--resume`` continues exactly where the run stopped.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import lsn_fast as lf
from lsn_fast.synthesis.stream import JSWStream, bank_from_phantoms


# ------------------------------------------------------------------------ a tiny ResNet-18-like net
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class TinyResNet(nn.Module):
    """ResNet-18 layout (stem, 4 stages × 2 basic blocks, global pool) at width ``w``; 1 output (JSW mm)."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        chans = [w, 2 * w, 4 * w, 8 * w]
        layers, cin = [], w
        for i, c in enumerate(chans):
            layers += [BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(x.mean(dim=(2, 3))).squeeze(-1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardization (attenuation images vary in offset with the soft tissue)."""
    x = x.float()
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    s = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - m) / s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=64, help="image size (phantom bank)")
    p.add_argument("--spacing", type=float, default=None, help="pixel spacing mm (default: 0.1 × 256 / size)")
    p.add_argument("--bank", default=None, help="bank file (.safetensors); default: phantoms")
    p.add_argument("--phantoms", type=int, default=64, help="phantom bank size")
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per rank (CPU)")
    p.add_argument("--prefetch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt", default=None, help="save model/optimizer/stream state here at the end")
    p.add_argument("--resume", default=None, help="checkpoint to resume from")
    p.add_argument("--log-every", type=int, default=5)
    args = p.parse_args(argv)

    backend = "nccl" if args.device == "cuda" else "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
    else:  # plain `python examples/train_jsw_ddp.py`: a world of one
        rank, world = 0, 1
    if args.device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, world)))
    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)

    # ---- data: the same bank and stream config on every rank; the stream shards by rank
    if args.bank:
        bank = lf.LayerStack.load(args.bank)
    else:
        spacing = args.spacing or 0.1 * 256 / args.size
        bank = bank_from_phantoms(args.phantoms, args.size, spacing, seed=args.seed, dtype=torch.float32,
                                  progress=rank == 0)
    if device.type == "cuda":
        bank = bank.to(device, torch.bfloat16)
    stream = JSWStream(bank, args.batch_size, jsw_mm=(0.0, 3.0), detector=lf.Detector(), seed=args.seed, device=device,
                       bone="random", augment=dict(hflip=0.5, rotate_deg=3.0), prefetch=args.prefetch,
                       detector_ranges={"n0": (3e3, 3e4, "log"), "blur_sigma_px": (0.4, 1.0)})

    model = TinyResNet(args.width).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    opt = torch.optim.AdamW(ddp.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = max(1, args.steps // 10)  # linear warm-up, then cosine to 5 % (a function of the step: resumable with more --steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, args.steps))))))
    step = 0
    if args.resume:
        ck = torch.load(args.resume, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        stream.load_state_dict(ck["streams"][rank])
        step = int(ck["step"])

    data = stream.loader(num_workers=args.workers) if args.workers > 0 else stream
    it = iter(data)
    t0, seen, ema = time.perf_counter(), 0, None
    while step < args.steps:
        images, jsw, info = next(it)  # infinite stream: every rank gets a batch every step
        x = normalize(images)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = ddp(x)
        loss = F.smooth_l1_loss(pred.float(), jsw, beta=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        seen += images.shape[0]
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            mae = (pred.detach().float() - jsw).abs().mean().item()
            rate = seen * world / (time.perf_counter() - t0)
            print(f"step {step:5d}  loss {ema:.4f}  batch MAE {mae:.3f} mm  {rate:7.1f} samples/s (all ranks)  "
                  f"first index {int(info['index'][0])}", flush=True)

    if args.ckpt:
        states = [None] * world
        if world > 1:
            dist.all_gather_object(states, stream.state_dict())
        else:
            states = [stream.state_dict()]
        if rank == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "streams": states, "step": step}, args.ckpt)
            print(f"saved {args.ckpt}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
