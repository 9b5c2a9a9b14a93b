"""CPU cost of the stream's move modes: samples/s at 256² px, batch 16, Poisson detector, one thread,
no workers (the same loop as bench_stream.py's CPU mode), for one-bone sub-pixel, centred sub-pixel
and centred whole-pixel moves."""
import time

import torch

import lsn_fast as lf
from lsn_fast.stream import JSWStream, bank_from_phantoms

torch.set_num_threads(1)
bank = bank_from_phantoms(16, 256, 0.1, seed=0, dtype=torch.float32, progress=False)
N, B = 96, 16
print(f"JSWStream on CPU, 256² px, batch {B}, {N} samples timed after one warm-up batch, 1 thread")
for name, kw in (("random bone, sub-pixel (linear)", dict(bone="random")),
                 ("both bones, sub-pixel (linear)", dict(bone="both")),
                 ("both bones, whole-pixel", dict(bone="both", moves="integer")),
                 ("random bone, whole-pixel", dict(bone="random", moves="integer"))):
    s = JSWStream(bank, B, jsw_mm=(0.0, 3.0), detector=lf.Detector(), num_samples=N + B,
                  detector_ranges={"n0": (3e3, 3e4, "log")}, **kw)
    it = iter(s)
    next(it)
    t0, got = time.perf_counter(), 0
    for images, _, _ in it:
        got += images.shape[0]
    dt = time.perf_counter() - t0
    print(f"{name:34s} {got / dt:8.1f} samples/s  {1e3 * dt / got:6.2f} ms/sample")
