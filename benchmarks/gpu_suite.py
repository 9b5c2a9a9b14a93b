"""Everything a GPU session checks, in one call (fits the 10-minute limit of one device run).

    python benchmarks/gpu_suite.py                 # output under $OUT (or benchmarks/results/gpu-<date>)
    python benchmarks/gpu_suite.py --out DIR --budget-s 540 --skip-build

Steps (each logged; a failing step is reported and the next one still runs), the open issue's
first:

1. environment: nvidia-smi, nvcc, torch / triton versions, which Python packages are missing;
2. ``tests/test_kernel_lsn_fused.py`` on the GPU, compiled (at most 180 s; fewer hypothesis
   examples than on the CPU, since every new constexpr combination is a compile);
3. ``bench_lsn.py``: LSN inference at 256² batch 64 of the ``default`` config and of the shipped
   weights (with their refiner): eager, bf16 channels-last, torch.compile max-autotune, fused
   kernels, fused convolutions, CUDA graph; at most 320 s (``--skip-lsn`` to skip); then
   ``bench_lsn_kernels.py``: each fused LSN op at the shipped model's shapes against eager and
   ``torch.compile``, at most 120 s; then issue 6's ``lsn-fast experiment five-percent --quick
   --device cuda --seeds 0`` (does the device path run; at most 180 s, when 240 s are left);
4. build ``lsn_fast._C`` and ``lsn_fast._cuda`` in place (``LSN_FAST_BUILD_CUDA=1 python setup.py
   build_ext --inplace``; ``import lsn_fast`` works without them, so steps 2–3 do not wait for it),
   then pytest of the cuda and triton synthesis backends on the GPU;
5. ``scripts/compile_cuda.sh`` (compile-only, warnings as errors, registers / spills per kernel);
6. compute-sanitizer memcheck (no caching allocator), racecheck and synccheck on
   ``benchmarks/cuda_smoke.py``, when at least 150 s are left;
7. ``bench_stream.py --device cuda``: JSWStream feeding a training loop vs a static batch and vs CPU
   DataLoader workers, at most 120 s (``--skip-stream`` to skip);
8. the benchmark grid of ``bench_synthesize.py`` (256², 512² x batch 64, 256, 1024 x bank 64, 4096 x
   fp32, bf16 x blur 0, 0.6) with whatever time is left.

With the default 540 s budget, steps 5–8 run only if the first ones finish early; a second call
with ``--skip-lsn`` runs them.

Files written: ``suite_log.txt`` (every step's output), ``summary.md``,
``bench/results.{md,csv,png,json}``, ``bench_lsn/results.{md,json}``, ``lsn_kernels/results.{md,json}``
and ``bench_stream.json``. The device tool returns 8 files at most, so at the end the suite deletes,
in this order and only as many as needed, ``bench/results.json``, ``bench/results.csv``,
``lsn_kernels/results.json`` and ``bench_lsn/results.json`` (their tables are in the .md files).
Exit status: 0 when every step passed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(
        ROOT, "benchmarks", "results", f"gpu-{_dt.date.today().isoformat()}"))
    ap.add_argument("--budget-s", type=float, default=540.0, help="total wall-clock budget")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-sanitizer", action="store_true")
    ap.add_argument("--skip-lsn", action="store_true", help="skip the LSN inference benchmark")
    ap.add_argument("--skip-stream", action="store_true", help="skip the JSWStream training-loop benchmark")
    ap.add_argument("--bench-args", default="--sizes 256,512 --batches 256,64,1024 --bank 64,4096 "
                                             "--dtypes fp32,bf16 --blur 0,0.6 --ref-max-pixels 16777216")
    args = ap.parse_args(argv)
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "suite_log.txt")
    log = open(log_path, "w")
    results: list[tuple[str, str, float]] = []

    def left() -> float:
        return args.budget_s - (time.time() - t_start)

    def step(name: str, cmd: list[str], env_extra: dict | None = None, timeout: float | None = None) -> bool:
        timeout = max(10.0, min(timeout or left(), left()))
        env = dict(os.environ, **(env_extra or {}))
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        head = f"\n===== {name}: {' '.join(cmd)}  (timeout {timeout:.0f}s)\n"
        print(head, flush=True)
        log.write(head)
        log.flush()
        t0 = time.time()
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout)
            out, ok = p.stdout, p.returncode == 0
            status = "ok" if ok else f"FAILED (exit {p.returncode})"
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            ok, status = False, "TIMEOUT"
        except OSError as e:
            out, ok, status = str(e), False, f"FAILED ({e})"
        dt = time.time() - t0
        log.write(out)
        log.write(f"\n----- {name}: {status} in {dt:.1f}s\n")
        log.flush()
        print(out[-4000:], flush=True)
        print(f"----- {name}: {status} in {dt:.1f}s", flush=True)
        results.append((name, status, dt))
        return ok

    # 1. environment
    missing = []
    for mod in ("pybind11", "pytest", "hypothesis", "kornia", "matplotlib", "triton", "setuptools"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    log.write(f"python {sys.version}\nmissing packages: {missing or 'none'}\n")
    step("nvidia-smi", ["nvidia-smi"], timeout=30)
    step("versions", [PY, "-c", "import torch, sys; print(torch.__version__, torch.version.cuda, "
                      "torch.cuda.get_device_name()); import triton; print('triton', triton.__version__)"], timeout=60)

    # 2. the fused LSN kernels, compiled, against their references (lsn_fast needs no built
    # extension for these, so the build waits until the open issue's measurements are in)
    if os.path.exists(os.path.join(ROOT, "tests/test_kernel_lsn_fused.py")):
        step("pytest-lsn-kernels", [PY, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                    "tests/test_kernel_lsn_fused.py"], timeout=180)
    # 3. LSN inference (eager / torch.compile max-autotune / fused + CUDA graph): issue 4's open
    # measurement; then the fused ops one at a time at the shipped model's shapes
    if not args.skip_lsn and left() > 200:
        # two models into one results file, rewritten after each: a timeout keeps the first
        step("bench_lsn", [PY, "benchmarks/bench_lsn.py", "--device", "cuda", "--batch", "64", "--size", "256",
                           "--model", "default,shipped", "--out", os.path.join(args.out, "bench_lsn")],
             timeout=min(320, left() - 100))
    if not args.skip_lsn and left() > 150:
        step("bench_lsn_kernels", [PY, "benchmarks/bench_lsn_kernels.py", "--device", "cuda", "--model", "shipped",
                                   "--out", os.path.join(args.out, "lsn_kernels")], timeout=min(120, left() - 60))
    # issue 6's experiment on CUDA, its quick configuration (one seed): does the device path run?
    # Its tables and plots go to a scratch folder; the printed table is in suite_log.txt
    if not args.skip_lsn and left() > 240:
        step("five-percent-cuda", [PY, "-m", "lsn_fast.cli.main", "experiment", "five-percent", "--quick", "--device", "cuda",
                                   "--seeds", "0", "--no-plots", "--out", os.path.join(tempfile.gettempdir(), "fp_cuda")],
             timeout=min(180, left() - 60))
    # 4. build the extensions, then the cuda and triton synthesis backends' tests on the GPU
    if not args.skip_build and left() > 60:
        step("build", [PY, "setup.py", "build_ext", "--inplace"], {"LSN_FAST_BUILD_CUDA": "1"},
             timeout=min(300, left() - 30))
    tests = [t for t in ("tests/test_backend_cuda.py", "tests/test_backend_triton.py")
             if os.path.exists(os.path.join(ROOT, t))]
    if left() > 60:
        step("pytest-backends", [PY, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
             timeout=min(240, left() - 30))
    # 5. compile-only check with resource usage
    if shutil.which("nvcc"):
        step("compile_cuda.sh", ["bash", "scripts/compile_cuda.sh"], {"PYTHON": PY}, timeout=180)
    # 6. compute-sanitizer on small runs of the cuda backend
    cs = shutil.which("compute-sanitizer") or ("/usr/local/cuda/bin/compute-sanitizer"
                                               if os.path.exists("/usr/local/cuda/bin/compute-sanitizer") else None)
    if args.skip_sanitizer:
        pass
    elif left() < 150:
        results.append(("compute-sanitizer", "skipped (no time left)", 0.0))
    elif cs is None:
        results.append(("compute-sanitizer", "not found", 0.0))
    else:
        smoke = [PY, "benchmarks/cuda_smoke.py"]
        step("memcheck", [cs, "--tool", "memcheck", "--error-exitcode", "1", "--leak-check", "no", *smoke],
             {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}, timeout=min(150, left() - 60))
        step("racecheck", [cs, "--tool", "racecheck", "--error-exitcode", "1", *smoke, "--quick"],
             timeout=max(10, min(150, left() - 60)))
        step("synccheck", [cs, "--tool", "synccheck", "--error-exitcode", "1", *smoke, "--quick"],
             timeout=max(10, min(120, left() - 60)))
    # JSWStream in a real loop: static batch vs stream (side stream, prefetch) vs CPU DataLoader workers
    if not args.skip_stream and left() > 200:
        step("bench_stream", [PY, "benchmarks/bench_stream.py", "--device", "cuda", "--sizes", "256", "--batch-size", "256",
                              "--steps", "30", "--json", os.path.join(args.out, "bench_stream.json")],
             timeout=min(120, left() - 120))
    bench_out = os.path.join(args.out, "bench")
    budget = left() - 30
    if budget > 60:
        step("bench", [PY, "benchmarks/bench_synthesize.py", "--device", "cuda", "--out", bench_out,
                       "--time-budget", str(int(budget - 20)), *args.bench_args.split()], timeout=budget)
    else:
        results.append(("bench", "skipped (no time left)", 0.0))

    # the device tool returns 8 files at most: drop the least needed (raw data the .md tables repeat)
    kept = sorted(os.path.relpath(os.path.join(d, f), args.out) for d, _, fs in os.walk(args.out) for f in fs)
    for extra in ("bench/results.json", "bench/results.csv", "lsn_kernels/results.json", "bench_lsn/results.json"):
        if len(kept) + 1 <= 8:  # + summary.md, written below
            break
        if extra in kept:
            os.remove(os.path.join(args.out, extra))
            kept.remove(extra)
            results.append((f"dropped {extra} (8-file limit)", "ok", 0.0))
    lines = ["# gpu_suite summary", "", f"* date: {_dt.datetime.now().isoformat(timespec='seconds')}",
             f"* python {sys.version.split()[0]}; missing packages: {', '.join(missing) or 'none'}",
             f"* total {time.time() - t_start:.0f}s of {args.budget_s:.0f}s budget", "",
             "| step | status | seconds |", "|---|---|---:|"]
    lines += [f"| {n} | {s} | {d:.1f} |" for n, s, d in results]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    log.close()
    return 0 if all(s == "ok" for _, s, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
