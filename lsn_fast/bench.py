"""``lsn-fast bench``: the fused synthesis operator vs eager PyTorch, kornia and torch.compile, in one run (DESIGN.md §6).

The workload: for each sample, gather a bank entry, shift the upper bone by a sub-pixel
displacement, Beer–Lambert, Gaussian quantum noise (+ optional detector blur), attenuation output.

Implementations (each row of the table):

* ``eager``        grid_sample + exp + randn (+ conv2d blur) in eager PyTorch: what one would write;
* ``kornia``       ``kornia.geometry.transform.translate`` for the shift, then the same exp / noise;
* ``compile``      ``torch.compile`` of ``eager`` (skipped with a note if it fails here);
* ``api:<name>``   ``lsn_fast.synthesize(bank, index, shift_px=..., detector=..., backend=name)`` for
                   ``reference`` and every available lsn_fast backend (validation included);
* ``op:<name>``    the backend's op called directly with prepared arguments (no API overhead).

Floor: bytes that must move per call (3 layers read in the storage dtype + 1 image written in the
output dtype, per sample) over the copy bandwidth measured in the same run (``copy_`` of a large
tensor, read + write). ``floor/time`` = 1 means running at copy speed.

    lsn-fast bench --quick                      # a smoke run: 64^2, B=8, seconds
    lsn-fast bench --device cpu --sizes 256 --batches 64 --bank 64 --dtypes fp32,bf16
    lsn-fast bench --device cuda --sizes 256,512 --batches 64,256,1024 \\
        --bank 64,4096 --dtypes fp32,bf16 --blur 0,0.6

(``python benchmarks/bench_synthesize.py ...`` is the same program.) Writes ``results.md``,
``results.csv``, ``results.json`` and ``results.png`` to ``--out`` (default
``lsn_fast_bench/<date>-<device>/`` in the working directory, git-ignored in a checkout; the
committed tables under ``benchmarks/results/`` are written only when ``--out`` names them).
Without kornia (the ``bench`` extra) the kornia rows say "skipped: install the bench extra".
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

import lsn_fast as lf

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
N0 = 1.0e4
MIN_COUNTS = 0.5


# ------------------------------------------------------------------------------ environment
def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    v = {"python": platform.python_version(), "torch": torch.__version__, "lsn_fast": lf.__version__}
    for mod in ("triton", "kornia"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            v[mod] = None
    if torch.cuda.is_available():
        v["cuda"] = torch.version.cuda
    return v


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device, warmup: int, repeats: int) -> list[float]:
    """Per-call times in ms: CUDA events on GPU (each call bracketed on the current stream),
    ``time.perf_counter`` on CPU; after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    if device == "cuda":
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def copy_bandwidth(device: str, nbytes: int, repeats: int = 10) -> float:
    """GB/s of ``dst.copy_(src)`` (read + write counted) for a ``nbytes`` float32 buffer."""
    n = nbytes // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    t = statistics.median(time_fn(lambda: dst.copy_(src), device, warmup=3, repeats=repeats))
    return 2 * n * 4 / (t * 1e-3) / 1e9


# ------------------------------------------------------------------------------ workload
def make_bank(size: int, n: int, dtype, device) -> lf.LayerStack:
    """A bank of ``n`` entries: min(n, 16) phantoms tiled; geometry measured once on the
    distinct phantoms and cached on the bank (so no run pays for it)."""
    stack, axis, jsw0 = _phantoms(size, min(n, 16))
    p = stack.batch_size
    reps = math.ceil(n / p)
    layers = [t.repeat(reps, 1, 1)[:n].to(device=device, dtype=dtype).contiguous()
              for t in (stack.soft, stack.upper, stack.lower)]
    ax = axis.repeat(reps, 1)[:n].to(device)
    bank = lf.LayerStack(*layers, stack.spacing_mm, ax, validate=False)
    return bank.set_geometry(ax, jsw0.repeat(reps)[:n])


_PHANTOMS: dict = {}


def _phantoms(size: int, p: int):
    if (size, p) not in _PHANTOMS:
        stack, _ = lf.phantom.generate(p, size=size, spacing_mm=0.1 * 256 / size, seed=0)
        axis, jsw0 = stack.geometry()
        _PHANTOMS[(size, p)] = (stack, axis, jsw0)
    return _PHANTOMS[(size, p)]


def gaussian_kernel1d(sigma: float, device) -> torch.Tensor:
    R = math.ceil(3 * sigma)
    j = torch.arange(-R, R + 1, dtype=torch.float32, device=device)
    w = torch.exp(-0.5 * (j / sigma) ** 2)
    return w / w.sum()


def eager_synth(soft, upper, lower, index, disp, n0: float, blur_w, out_dtype, noise: str = "gaussian"):
    """grid_sample + exp + randn (or torch.poisson) (+ separable conv2d blur): the eager formulation."""
    s = soft.index_select(0, index).float().unsqueeze(1)
    u = upper.index_select(0, index).float().unsqueeze(1)
    l = lower.index_select(0, index).float().unsqueeze(1)
    B, _, H, W = s.shape
    theta = torch.zeros(B, 2, 3, device=s.device, dtype=torch.float32)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * disp[:, 1] / W  # out(y,x) = u(y - dy, x - dx), align_corners=False
    theta[:, 1, 2] = -2.0 * disp[:, 0] / H
    grid = F.affine_grid(theta, (B, 1, H, W), align_corners=False)
    u = F.grid_sample(u, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _detector(s + u + l, n0, blur_w, out_dtype, noise)


def _detector(att, n0: float, blur_w, out_dtype, noise: str = "gaussian"):
    q = n0 * torch.exp(-att)
    if noise == "poisson":
        q = torch.poisson(q)
    else:
        q = q + torch.sqrt(q.clamp_min(0.0)) * torch.randn_like(q)
    if blur_w is not None:
        R = (blur_w.numel() - 1) // 2
        q = F.conv2d(F.pad(q, (0, 0, R, R), mode="replicate"), blur_w.view(1, 1, -1, 1))
        q = F.conv2d(F.pad(q, (R, R, 0, 0), mode="replicate"), blur_w.view(1, 1, 1, -1))
    return (-torch.log(q.clamp_min(MIN_COUNTS) / n0)).to(out_dtype)


def kornia_synth(soft, upper, lower, index, disp, n0: float, blur_w, out_dtype, noise: str = "gaussian"):
    from kornia.geometry.transform import translate

    s = soft.index_select(0, index).float().unsqueeze(1)
    u = upper.index_select(0, index).float().unsqueeze(1)
    l = lower.index_select(0, index).float().unsqueeze(1)
    u = translate(u, disp.flip(1), mode="bilinear", padding_mode="border", align_corners=True)  # (dx, dy)
    return _detector(s + u + l, n0, blur_w, out_dtype, noise)


# ------------------------------------------------------------------------------ main
def parse_list(s, typ):
    return [typ(v) for v in s.split(",") if v.strip()]


def add_bench_arguments(ap: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``lsn-fast bench`` and ``benchmarks/bench_synthesize.py``)."""
    ap.add_argument("--quick", action="store_true",
                    help="smoke preset: 64^2, B=8, bank 8, fp32, blur 0 and 0.6, 2 repeats (seconds on a CPU); "
                         "options given explicitly still win")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--sizes", default=None, help="image sizes in px, comma-separated (default 256)")
    ap.add_argument("--batches", default=None, help="batch sizes (default 64)")
    ap.add_argument("--bank", default=None, help="bank sizes (default 64)")
    ap.add_argument("--dtypes", default=None, help="storage = output dtype: fp32, bf16, fp16 (default fp32,bf16)")
    ap.add_argument("--blur", default=None, help="detector blur sigma(s) in px (default 0,0.6)")
    ap.add_argument("--noise", choices=["gaussian", "poisson"], default="gaussian",
                    help="quantum noise of every row (eager: randn or torch.poisson; lsn_fast: Detector(noise=...))")
    ap.add_argument("--impls", default="eager,kornia,compile,api,op",
                    help="any of eager, kornia, compile, api (lsn_fast.synthesize per backend), op (raw backend op)")
    ap.add_argument("--backends", default="", help="lsn_fast backends to run (default: every available one)")
    ap.add_argument("--ref-max-pixels", type=float, default=0,
                    help="skip the reference backend when B*H*W exceeds this (0: never skip)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--copy-mb", type=int, default=None, help="buffer for the copy-bandwidth measurement")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds: start no new configuration after this (0: no limit); configs run in the given order")
    ap.add_argument("--out", default=None, help="results folder (default: lsn_fast_bench/<date>-<device>/)")
    ap.add_argument("--no-plot", action="store_true")


def default_out(device: str, date: str | None = None) -> str:
    """``lsn_fast_bench/<date>-<device>``: outside the repository's tracked folders (git-ignored)."""
    date = date or _dt.datetime.now().strftime("%Y-%m-%d")
    return os.path.join("lsn_fast_bench", f"{date}-{device}")


def kornia_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("kornia") is not None


KORNIA_SKIPPED = "skipped: install the bench extra (pip install 'lsn_fast[bench]')"


_QUICK = {"sizes": "64", "batches": "8", "bank": "8", "dtypes": "fp32", "blur": "0,0.6", "warmup": 1, "repeats": 2,
          "copy_mb": 64}
_DEFAULTS = {"sizes": "256", "batches": "64", "bank": "64", "dtypes": "fp32,bf16", "blur": "0,0.6"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_bench_arguments(ap)
    args = ap.parse_args(argv)
    args.command_line = " ".join(["bench_synthesize.py", *(sys.argv[1:] if argv is None else argv)])
    return run_bench(args)


def run_bench(args) -> int:
    """Run the benchmark grid described by ``args`` (see :func:`add_bench_arguments`); 0 on success."""
    for k, v in (_QUICK if args.quick else {}).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k, v in _DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in ("sizes", "batches", "bank"):
        vals = parse_list(getattr(args, name), str)
        if not vals or not all(v.isdigit() and int(v) > 0 for v in vals):
            raise ValueError(f"--{name}: expected positive integers separated by commas, got {getattr(args, name)!r}")
    bad = [d for d in parse_list(args.dtypes, str) if d not in DTYPES]
    if bad:
        raise ValueError(f"--dtypes: unknown {bad}; choose from {sorted(DTYPES)}")
    try:
        if any(b < 0 for b in parse_list(args.blur, float)):
            raise ValueError
    except ValueError:
        raise ValueError(f"--blur: expected non-negative numbers separated by commas, got {args.blur!r}") from None
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    warmup = args.warmup if args.warmup is not None else (5 if device == "cuda" else 2)
    repeats = args.repeats if args.repeats is not None else (20 if device == "cuda" else 5)
    copy_mb = args.copy_mb if args.copy_mb is not None else (1024 if device == "cuda" else 256)
    impls = set(parse_list(args.impls, str))
    date = _dt.datetime.now().strftime("%Y-%m-%d")
    out_dir = args.out or default_out(device, date)
    os.makedirs(out_dir, exist_ok=True)

    avail = {k: v for k, v in lf.backends().items() if v}
    wanted = parse_list(args.backends, str) or list(avail)
    from lsn_fast.ops import registry

    notes: list[str] = []
    backend_fns = {}
    for name in wanted:
        try:
            backend_fns[name] = registry.resolve("synthesize", device, name)[1]
        except Exception as e:  # noqa: BLE001 - not available / not on this device
            notes.append(f"backend {name}: skipped ({type(e).__name__}: {e})")
    unavailable = {k: str(registry.backend_error(k)) for k, v in lf.backends().items() if not v}

    meta = {
        "command": getattr(args, "command_line", None) or "lsn-fast " + " ".join(getattr(args, "argv", sys.argv[1:])),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": device, "device_name": device_name(device), "versions": versions(),
        "backends_available": list(avail), "backends_unavailable": unavailable,
        "warmup": warmup, "repeats": repeats, "noise": args.noise,
    }
    print(f"device: {meta['device_name']}")
    print(f"versions: {meta['versions']}")
    bw = copy_bandwidth(device, copy_mb * 2**20)
    meta["copy_GBps"] = bw
    print(f"copy bandwidth ({copy_mb} MiB copy_, read+write): {bw:.1f} GB/s")

    compiled = None
    if "compile" in impls:
        try:
            import torch._dynamo as dynamo  # (a bare `import torch._dynamo` would make torch local to main)

            dynamo.config.cache_size_limit = max(64, dynamo.config.cache_size_limit)
            compiled = torch.compile(eager_synth)
        except Exception as e:  # noqa: BLE001
            notes.append(f"torch.compile unavailable: {type(e).__name__}: {e}")
    compile_failed = None

    rows = []
    t_run, over_budget = time.perf_counter(), False
    header = f"{'config':<40} {'impl':<16} {'ms':>10} {'min ms':>10} {'samples/s':>12} {'floor/time':>10}"
    print(header)
    print("-" * len(header))
    for size in parse_list(args.sizes, int):
        for nbank in parse_list(args.bank, int):
            for dname in parse_list(args.dtypes, str):
                dtype = DTYPES[dname]
                if over_budget:
                    continue
                bank = make_bank(size, nbank, dtype, device)
                for B in parse_list(args.batches, int):
                    g = torch.Generator().manual_seed(B)
                    index = torch.randint(0, nbank, (B,), generator=g).to(device)
                    shift = (3.0 * torch.rand(B, generator=g)).to(device)  # opens the joint: always valid
                    axis, _ = bank.geometry()
                    disp = (shift[:, None] * axis.index_select(0, index)).float().contiguous()
                    for blur in parse_list(args.blur, float):
                        if args.time_budget and time.perf_counter() - t_run > args.time_budget:
                            if not over_budget:
                                notes.append(f"time budget of {args.time_budget:.0f}s reached: later configurations not run")
                            over_budget = True
                            continue
                        cfg = f"{size}^2 B={B} bank={nbank} {dname} blur={blur:g}"
                        det = lf.Detector(n0=N0, noise=args.noise, blur_sigma_px=blur, electronic_sigma=0.0)
                        params = det.params(B, device)
                        sample_index = torch.arange(B, device=device)
                        blur_w = gaussian_kernel1d(blur, device) if blur > 0 else None
                        nbytes = B * size * size * (3 * dtype.itemsize + dtype.itemsize)
                        floor_ms = nbytes / (bw * 1e9) * 1e3
                        cands = []
                        if "eager" in impls:
                            cands.append(("eager", lambda: eager_synth(bank.soft, bank.upper, bank.lower, index, disp, N0, blur_w, dtype, args.noise)))
                        if "kornia" in impls and not kornia_available():
                            rows.append({"config": cfg, "size": size, "batch": B, "bank": nbank, "dtype": dname, "blur": blur,
                                         "impl": "kornia", "floor_ms": floor_ms, "bytes": nbytes, "ms": float("nan"),
                                         "samples_per_s": float("nan"), "floor_over_time": float("nan"),
                                         "skipped": KORNIA_SKIPPED})
                            print(f"{cfg:<40} {'kornia':<16} {KORNIA_SKIPPED}", flush=True)
                        elif "kornia" in impls:
                            cands.append(("kornia", lambda: kornia_synth(bank.soft, bank.upper, bank.lower, index, disp, N0, blur_w, dtype, args.noise)))
                        if compiled is not None and compile_failed is None:
                            cands.append(("compile", lambda: compiled(bank.soft, bank.upper, bank.lower, index, disp, N0, blur_w, dtype, args.noise)))
                        skip_ref = args.ref_max_pixels and B * size * size > args.ref_max_pixels
                        for name, fn in backend_fns.items():
                            if name == "reference" and skip_ref:
                                continue
                            if "api" in impls:
                                cands.append((f"api:{name}", lambda name=name: lf.synthesize(
                                    bank, index, shift_px=shift, detector=det, seed=1, backend=name, out_dtype=dtype)))
                            if "op" in impls and name != "reference":
                                cands.append((f"op:{name}", lambda fn=fn: fn(
                                    bank.soft, bank.upper, bank.lower, index, disp, params, move_lower=False, seed=1,
                                    sample_index=sample_index, noise_mode=det.noise_mode, output_mode=0, interp="linear",
                                    min_counts=MIN_COUNTS, out_dtype=dtype)))
                        for impl, fn in cands:
                            row = {"config": cfg, "size": size, "batch": B, "bank": nbank, "dtype": dname, "blur": blur,
                                   "impl": impl, "floor_ms": floor_ms, "bytes": nbytes}
                            try:
                                t0 = time.perf_counter()
                                fn()  # first call: compile / load / allocate
                                sync(device)
                                row["first_call_s"] = time.perf_counter() - t0
                                # a slow implementation (the reference on CPU: seconds a call) gets fewer calls
                                slow = row["first_call_s"] > 2.0 and impl != "compile"
                                ts = time_fn(fn, device, 0 if slow else warmup, min(repeats, 3) if slow else repeats)
                                row["calls"] = len(ts)
                                ms = statistics.median(ts)
                                row.update(ms=ms, ms_min=min(ts), samples_per_s=B / (ms * 1e-3), floor_over_time=floor_ms / ms)
                                print(f"{cfg:<40} {impl:<16} {ms:>10.3f} {min(ts):>10.3f} {row['samples_per_s']:>12.0f} "
                                      f"{row['floor_over_time']:>10.3f}", flush=True)
                            except Exception as e:  # noqa: BLE001 - record and go on (OOM, compile failure...)
                                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                                row.update(ms=float("nan"), samples_per_s=float("nan"), floor_over_time=float("nan"), error=msg)
                                print(f"{cfg:<40} {impl:<16} {'failed':>10}  {msg}", flush=True)
                                if impl == "compile":
                                    compile_failed = msg
                                    notes.append(f"torch.compile failed on {cfg}: {msg}; skipped afterwards")
                                    traceback.print_exc(limit=3)
                                if device == "cuda":
                                    torch.cuda.empty_cache()
                            rows.append(row)
                del bank
                if device == "cuda":
                    torch.cuda.empty_cache()

    meta["notes"] = notes
    write_results(out_dir, meta, rows, plot=not args.no_plot)
    for n in notes:
        print("note:", n)
    print(f"results: {out_dir}")
    return 0


def write_results(out_dir, meta, rows, plot=True):
    cols = ["config", "size", "batch", "bank", "dtype", "blur", "impl", "ms", "ms_min", "calls", "samples_per_s",
            "floor_ms", "floor_over_time", "first_call_s", "bytes", "error", "skipped"]
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
    lines = [
        "# lsn-fast bench results (synthesis operator)", "",
        f"* command: `{meta['command']}`",
        f"* date: {meta['date']}",
        f"* device: {meta['device']}: **{meta['device_name']}**",
        f"* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"* lsn_fast backends available: {', '.join(meta['backends_available'])}; unavailable: "
        + (", ".join(f"{k} ({v.splitlines()[0][:80] if v else ''})" for k, v in meta["backends_unavailable"].items()) or "none"),
        f"* copy bandwidth (copy_, read + write): **{meta['copy_GBps']:.1f} GB/s**; floor = (3 layers in storage dtype "
        "+ 1 image in output dtype) x B x H x W / bandwidth",
        f"* timing: median (and min) of {meta['repeats']} calls after {meta['warmup']} warm-up calls "
        + ("(CUDA events)" if meta["device"] == "cuda" else "(time.perf_counter)")
        + "; an implementation whose first call takes > 2 s gets 3 calls, no warm-up",
        f"* workload: gather + shift (bilinear) + Beer-Lambert (n0 = 1e4) + {meta.get('noise', 'gaussian')} noise (+ detector blur), "
        "attenuation output; `api:` = lsn_fast.synthesize (validation included), `op:` = the backend op alone",
        "",
        "| config | impl | ms (median) | ms (min) | samples/s | floor ms | floor/time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['config']} | {r['impl']} | {r['skipped']} | | | {r['floor_ms']:.4f} | |")
        elif r.get("error"):
            lines.append(f"| {r['config']} | {r['impl']} | failed: {r['error'][:80]} | | | {r['floor_ms']:.4f} | |")
        else:
            lines.append(f"| {r['config']} | {r['impl']} | {r['ms']:.3f} | {r['ms_min']:.3f} | {r['samples_per_s']:.0f} | "
                         f"{r['floor_ms']:.4f} | {r['floor_over_time']:.3f} |")
    if meta.get("notes"):
        lines += ["", "Notes:", ""] + [f"* {n}" for n in meta["notes"]]
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if plot:
        try:
            _plot(out_dir, meta, rows)
        except Exception as e:  # noqa: BLE001
            print(f"plot failed: {type(e).__name__}: {e}")


def _plot(out_dir, meta, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r.get("error") and not r.get("skipped")]
    configs = list(dict.fromkeys(r["config"] for r in ok))
    impls = list(dict.fromkeys(r["impl"] for r in ok))
    if not ok:
        return
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(configs) + 4), 5.5))
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        xs, ms, fr = [], [], []
        for i, c in enumerate(configs):
            r = next((r for r in ok if r["config"] == c and r["impl"] == impl), None)
            if r is not None:
                xs.append(i + (k - (len(impls) - 1) / 2) * width)
                ms.append(r["ms"])
                fr.append(r["floor_over_time"])
        axes[0].bar(xs, ms, width, label=impl)
        axes[1].bar(xs, fr, width, label=impl)
    for ax, title in ((axes[0], "time per call (ms, log)"), (axes[1], "floor / time (1 = copy speed, log)")):
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(configs, rotation=35, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"lsn_fast synthesize: {meta['device_name'][:70]} (copy {meta['copy_GBps']:.0f} GB/s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "results.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
