"""JSWStream throughput, and what it costs a training loop.

CPU (default): samples/s of the stream at 128² and 256² in-process (``workers 0``, torch threads as
set) and through a DataLoader with 1 and 2 worker processes (1 thread each), small counts::

    python benchmarks/bench_stream.py                      # table on stdout
    python benchmarks/bench_stream.py --sizes 128 --n 256 --json benchmarks/results/stream_cpu.json

GPU (``--device cuda``, for a GPU session): step time of a ResNet-18-like JSW regressor
(examples/train_jsw_ddp.py's TinyResNet) fed three ways, same samples, same model:

* ``static``   one pre-made batch reused: the pure training step (the floor);
* ``stream``   JSWStream on the GPU (bank in GPU memory, bf16), side-stream generation with prefetch;
* ``loader``   the standard recipe: JSWStream on the CPU inside a DataLoader with ``--workers`` CPU
  workers, ``pin_memory=True``, ``.to(cuda, non_blocking=True)``;

and reports ms/step and the overhead over ``static``::

    python benchmarks/bench_stream.py --device cuda --sizes 256 --batch-size 256 --steps 50 --workers 8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import lsn_fast as lf  # noqa: E402
from lsn_fast.synthesis.stream import JSWStream, bank_from_phantoms  # noqa: E402


def _bank(size: int, n: int, dtype=torch.float32):
    return bank_from_phantoms(n, size, 0.1 * 256 / size, seed=0, dtype=dtype, progress=False)


def _stream(bank, batch, device="cpu", bone="random", **kw):
    return JSWStream(bank, batch, jsw_mm=(0.0, 3.0), detector=lf.Detector(), bone=bone, device=device,
                     detector_ranges={"n0": (3e3, 3e4, "log")}, **kw)


def _worker_init(_):
    torch.set_num_threads(1)


def cpu_rate(bank, batch: int, n: int, workers: int) -> float:
    """Samples/s for n samples (after one warm-up batch, which also absorbs worker start-up)."""
    s = _stream(bank, batch, num_samples=n + batch * max(1, workers))
    if workers == 0:
        it = iter(s)
    else:
        it = iter(torch.utils.data.DataLoader(s, batch_size=None, num_workers=workers, worker_init_fn=_worker_init,
                                              persistent_workers=False, prefetch_factor=2))
    for _ in range(max(1, workers)):  # one warm-up batch per worker
        next(it)
    t0, got = time.perf_counter(), 0
    for images, _, _ in it:
        got += images.shape[0]
    return got / (time.perf_counter() - t0)


def run_cpu(args) -> dict:
    rows = []
    print(f"JSWStream on CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, backend {lf.backends()}), Poisson detector, random bone, batch {args.batch_size}")
    print(f"{'size':>6} {'workers':>8} {'samples/s':>11} {'ms/sample':>10}")
    for size in args.sizes:
        bank = _bank(size, args.bank_size)
        for w in args.workers:
            r = cpu_rate(bank, args.batch_size, args.n, w)
            rows.append({"size": size, "workers": w, "samples_per_s": r})
            print(f"{size:>5}² {w:>8} {r:>11.1f} {1e3 / r:>10.2f}", flush=True)
    return {"mode": "cpu", "rows": rows}


def _load_model_module():
    spec = importlib.util.spec_from_file_location("train_jsw_ddp", os.path.join(os.path.dirname(HERE), "examples", "train_jsw_ddp.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_cuda(args) -> dict:  # pragma: no cover - GPU session
    import torch.nn.functional as F

    ex = _load_model_module()
    dev = torch.device("cuda")
    rows = []
    print(f"training-loop overhead on {torch.cuda.get_device_name(dev)}, TinyResNet(width {args.width}), batch {args.batch_size}, "
          f"bf16 autocast, {args.steps} timed steps, backends {lf.backends()}")
    print(f"{'size':>6} {'feed':>22} {'ms/step':>9} {'overhead':>9} {'samples/s':>10}")
    for size in args.sizes:
        bank_cpu = _bank(size, args.bank_size)
        model = ex.TinyResNet(args.width).to(dev).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(x, y):
            x = ex.normalize(x).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pred = model(x)
            loss = F.smooth_l1_loss(pred.float(), y, beta=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def timed(batches, name):
            it = iter(batches)
            for _ in range(args.warmup):
                x, y, _ = next(it)
                step(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                x, y, _ = next(it)
                step(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))
            torch.cuda.synchronize()
            return (time.perf_counter() - t0) / args.steps

        x0, y0, _ = _stream(bank_cpu.to(dev), args.batch_size, device=dev).generate(torch.arange(args.batch_size))
        static = timed(iter(lambda: (x0, y0, None), None), "static")
        gpu = timed(_stream(bank_cpu.to(dev, torch.bfloat16), args.batch_size, device=dev, prefetch=args.prefetch), "stream")
        # centred families (the five-percent recipe): both bones, whole-pixel moves (the lower one outside the fused op)
        both = timed(_stream(bank_cpu.to(dev, torch.bfloat16), args.batch_size, device=dev, prefetch=args.prefetch, bone="both",
                             moves="integer"), "stream-both")
        pinned = timed(_stream(bank_cpu, args.batch_size, device=dev, prefetch=args.prefetch), "stream-pinned")
        dl = torch.utils.data.DataLoader(_stream(bank_cpu, args.batch_size), batch_size=None, num_workers=args.cpu_workers,
                                         pin_memory=True, worker_init_fn=_worker_init, prefetch_factor=4, persistent_workers=True)
        loader = timed(dl, "loader")
        for name, t in (("static (floor)", static), ("JSWStream GPU bank", gpu), ("GPU bank, both, int px", both),
                        ("JSWStream CPU bank→GPU", pinned),
                        (f"DataLoader {args.cpu_workers} CPU wkr", loader)):
            rows.append({"size": size, "feed": name, "ms_per_step": 1e3 * t, "overhead_ms": 1e3 * (t - static),
                         "samples_per_s": args.batch_size / t})
            print(f"{size:>5}² {name:>22} {1e3 * t:>9.2f} {1e3 * (t - static):>+9.2f} {args.batch_size / t:>10.0f}", flush=True)
    return {"mode": "cuda", "device": torch.cuda.get_device_name(dev), "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="CPU mode: DataLoader worker counts")
    p.add_argument("--n", type=int, default=96, help="CPU mode: samples timed per configuration")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bank-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="GPU mode: timed training steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--width", type=int, default=32, help="GPU mode: TinyResNet width")
    p.add_argument("--prefetch", type=int, default=2)
    p.add_argument("--cpu-workers", type=int, default=8, help="GPU mode: CPU DataLoader workers of the baseline")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    res = run_cuda(args) if args.device == "cuda" else run_cpu(args)
    res.update({"torch": torch.__version__, "lsn_fast": lf.__version__, "args": vars(args)})
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
