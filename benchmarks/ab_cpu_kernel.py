"""A/B timing of builds of the CPU synthesis kernel (lsn_fast._C) on one configuration.

Each ``--so`` is a copy of a built ``_C*.so``; the script loads it in a fresh subprocess (one
extension per process), calls the cpu backend's op on the same prepared arguments and prints
median / min ms and samples/s. ``--so eager`` times the same computation in eager PyTorch instead
(grid_sample shift, exp, ``torch.poisson`` or ``randn`` noise, replicate-padded conv2d blur, log).
Candidates alternate call by call, so a neighbour's load on a shared machine hits every one alike.

    python benchmarks/ab_cpu_kernel.py --so /tmp/ab/before.so,/tmp/ab/after.so,eager \\
        --threads 1 --noise poisson --blur 0.6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_CHILD = r"""
import importlib.util, json, math, sys, time
import torch
import torch.nn.functional as F
if {so!r} != "eager":
    spec = importlib.util.spec_from_file_location("lsn_fast._C", {so!r})
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["lsn_fast._C"] = mod
sys.path.insert(0, {root!r})
sys.path.insert(0, {here!r})
torch.set_num_threads({threads})
import lsn_fast as lf
from lsn_fast.ops.backends.cpu import synthesize_cpu
size, B, nbank = {size}, {batch}, {bank}
stack, _ = lf.phantom.generate(16, size=size, spacing_mm=0.1 * 256 / size, seed=0)  # as the bench: 16 tiled
reps = math.ceil(nbank / 16)
layers = [t.repeat(reps, 1, 1)[:nbank].float().contiguous() for t in (stack.soft, stack.upper, stack.lower)]
bank = lf.LayerStack(*layers, stack.spacing_mm, stack.geometry()[0].repeat(reps, 1)[:nbank], validate=False)
g = torch.Generator().manual_seed(B)
index = torch.randint(0, nbank, (B,), generator=g)
shift = 3.0 * torch.rand(B, generator=g)
axis, _ = bank.geometry()
disp = (shift[:, None] * axis.index_select(0, index)).float().contiguous()
params = lf.Detector(n0=1e4, noise={noise!r}, blur_sigma_px={blur}, electronic_sigma=0.0).params(B)
kw = dict(move_lower=False, seed=1, sample_index=torch.arange(B), noise_mode={mode}, output_mode=0,
          interp="linear", min_counts=0.5, out_dtype=torch.float32)
fn = lambda: synthesize_cpu(bank.soft, bank.upper, bank.lower, index, disp, params, **kw)


def eager():
    s = bank.soft.index_select(0, index).unsqueeze(1)
    u = bank.upper.index_select(0, index).unsqueeze(1)
    l = bank.lower.index_select(0, index).unsqueeze(1)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * disp[:, 1] / size
    theta[:, 1, 2] = -2.0 * disp[:, 0] / size
    grid = F.affine_grid(theta, (B, 1, size, size), align_corners=False)
    u = F.grid_sample(u, grid, mode="bilinear", padding_mode="border", align_corners=False)
    q = 1e4 * torch.exp(-(s + u + l))
    if {mode} == 2:
        q = torch.poisson(q)
    elif {mode} == 1:
        q = q + torch.sqrt(q.clamp_min(0.0)) * torch.randn_like(q)
    if {blur} > 0:
        R = math.ceil(3 * {blur})
        j = torch.arange(-R, R + 1, dtype=torch.float32)
        w = torch.exp(-0.5 * (j / {blur}) ** 2)
        w = w / w.sum()
        q = F.conv2d(F.pad(q, (0, 0, R, R), mode="replicate"), w.view(1, 1, -1, 1))
        q = F.conv2d(F.pad(q, (R, R, 0, 0), mode="replicate"), w.view(1, 1, 1, -1))
    return -torch.log(q.clamp_min(0.5) / 1e4)


if {so!r} == "eager":
    fn, isa = eager, "torch"
else:
    isa = mod.synthesize_isa()
out = fn(); fn()
print("READY", isa, float(out.double().sum()), flush=True)
for line in sys.stdin:
    t0 = time.perf_counter(); fn(); dt = (time.perf_counter() - t0) * 1e3
    print(dt, flush=True)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", required=True, help="comma-separated paths of built extensions, or eager")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bank", type=int, default=64)
    ap.add_argument("--noise", default="poisson", choices=["none", "gaussian", "poisson"])
    ap.add_argument("--blur", type=float, default=0.6)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--isa", default="", help="LSN_FAST_CPU_ISA for the children (avx512, avx2, base)")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)
    mode = {"none": 0, "gaussian": 1, "poisson": 2}[args.noise]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.isa:
        env["LSN_FAST_CPU_ISA"] = args.isa
    procs = {}
    for so in args.so.split(","):
        code = _CHILD.format(so=so if so == "eager" else os.path.abspath(so), root=ROOT, here=HERE, threads=args.threads, size=args.size,
                             batch=args.batch, bank=args.bank, noise=args.noise, blur=args.blur, mode=mode)
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=env)
        line = p.stdout.readline().split()
        assert line and line[0] == "READY", f"{so}: child failed"
        procs[so] = (p, line[1], line[2])
    times = {so: [] for so in procs}
    for _ in range(args.repeats):
        for so, (p, _, _) in procs.items():
            p.stdin.write("\n")
            p.stdin.flush()
            times[so].append(float(p.stdout.readline()))
    res = []
    for so, (p, isa, checksum) in procs.items():
        p.stdin.close()
        p.wait()
        ts = times[so]
        med, mn = statistics.median(ts), min(ts)
        r = dict(so=so, isa=isa, threads=args.threads, ms_median=med, ms_min=mn,
                 samples_per_s_median=args.batch / med * 1e3, samples_per_s_best=args.batch / mn * 1e3, checksum=checksum)
        res.append(r)
        print(f"{os.path.basename(so):<40} isa={isa:<7} threads={args.threads} median {med:8.3f} ms  min {mn:8.3f} ms  "
              f"{r['samples_per_s_median']:8.0f} samples/s (best {r['samples_per_s_best']:.0f})  sum={checksum}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
