"""LSN inference speed: eager vs torch.compile vs fused kernels + channels-last bf16 + CUDA graphs.

Issue 4's target: images/s at 256² batch 64 on an H100-class GPU, the fused path >= 1.3x
``torch.compile(mode="max-autotune")`` of the same model. Rows (one run, one device):

* ``eager-fp32``        the model as trained (NCHW float32), ``torch.no_grad``;
* ``eager-bf16-cl``     bf16 autocast + channels-last, no fusion (CUDA only);
* ``compile-<mode>``    ``torch.compile(model, mode=...)`` of the bf16 channels-last model;
* ``graph-unfused``     :class:`lsn_fast.inference.FastSeparator` with ``fused=False`` (graph only);
* ``fused``             FastSeparator with the Triton kernels, no graph;
* ``fused-graph``       FastSeparator with the Triton kernels and a CUDA graph (the product path);
* ``fused-graph-f32tail`` the same with the head and the refiner in float32
  (``FastSeparator(float32_tail=True)``: what buying back bf16's recomposition error costs);
* ``fused-conv[-graph]`` also the 3×3 convolutions as fused normalize-activate-convolve kernels
  (``FastSeparator(fused_convs=True)``; ``fused-conv`` without a graph is not in the default list).

Each row also reports the max abs difference of its layers from ``eager-fp32`` (bf16 rows differ
by bf16 rounding, ~1e-2 of the layer range), the relative L2 difference of its denoised image D
(the recomposition metric's units; with random ``default`` weights it only compares the paths) and ``floor/time`` with floor = model FLOPs (counted by
``torch.utils.flop_counter``) over the device's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s; on CPU
the achieved GFLOP/s is reported instead).

    python benchmarks/bench_lsn.py --device cuda --batch 64 --size 256 --model default,shipped
    python benchmarks/bench_lsn.py --device cpu --batch 2 --size 64 --model tiny --variants eager-fp32,fused   # smoke

``--model`` takes several models, measured one after the other into one results file: ``default``
(the GPU-size config, random weights: the speed does not depend on the values) and ``shipped``
(the packaged CPU-trained weights with their full-resolution refiner, whose fused path runs the
refiner between the ``refine_input`` and ``recompose_head`` kernels).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time

import torch

import lsn_fast as lf
from lsn_fast.bench import device_name, sync, time_fn, versions
from lsn_fast.model.inference import FastSeparator
from lsn_fast.model.lsn import LSN, LSNConfig

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12}
ALL = ["eager-fp32", "eager-bf16-cl", "compile", "graph-unfused", "fused", "fused-graph", "fused-graph-f32tail",
       "fused-conv-graph"]


def model_flops(model: LSN, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, validate=False)
    return float(fc.get_total_flops())


def load_model(spec: str) -> LSN:
    """``tiny`` | ``small`` | ``default`` (random weights of that config, the zero-initialized
    layers drawn too), ``shipped`` (the packaged weights, with their refiner) or a path to a
    .safetensors file."""
    if spec == "shipped":
        return lf.LSN.pretrained()
    if os.path.isfile(spec):
        return lf.LSN.pretrained(spec)
    model = LSN(LSNConfig.named(spec))
    with torch.no_grad():  # the zero-initialized layers (head, attention output) would make the output
        for p in model.parameters():  # independent of the trunk, and the error column blind to it
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.02)
    return model


def bench_model(spec: str, model: LSN, x: torch.Tensor, args, dev: str, warmup: int, repeats: int) -> dict:
    """Every wanted variant of one model on input ``x``; returns {"meta": ..., "rows": [...], "notes": [...]}."""
    B, _, H, W = x.shape
    flops = model_flops(model, x)
    name = device_name(dev)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if dev == "cuda" else None
    refine = model.config.refine_channels
    print(f"device: {name}; model {spec} ({model.num_parameters / 1e6:.2f} M params"
          f"{f', refiner {refine} ch' if refine else ''}); input {tuple(x.shape)}; "
          f"{flops / 1e9:.1f} GFLOP per batch" + (f"; bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else ""), flush=True)
    with torch.no_grad():
        ref_out = model(x)
        ref, ref_d = ref_out.layers.float(), ref_out.denoised.float()

    wanted = [v for v in args.variants.split(",") if v]
    rows, notes = [], []
    from lsn_fast.model.fused import triton_available

    if not triton_available(dev):
        notes.append(f"fused Triton kernels unavailable on {dev}: the fused rows ran the eager fallback")

    def add(label, fn):
        row = {"model": spec, "variant": label}
        try:
            t0 = time.perf_counter()
            out = fn()
            sync(dev)
            row["first_call_s"] = time.perf_counter() - t0
            row["max_abs_err_vs_eager_fp32"] = float((out.layers.float() - ref).abs().max())
            # what reduced precision costs in the recomposition metric's own units (relative L2 of D)
            row["denoised_rel_l2_vs_eager_fp32"] = float((out.denoised.float() - ref_d).norm() / ref_d.norm())
            ts = time_fn(fn, dev, warmup, repeats)
            ms = statistics.median(ts)
            row.update(ms=ms, ms_min=min(ts), images_per_s=B / (ms * 1e-3),
                       tflops=flops / (ms * 1e-3) / 1e12, floor_over_time=(flops / peak) / (ms * 1e-3) if peak else None)
            ft = f"{row['floor_over_time']:.3f}" if peak else "-"
            print(f"{label:<22} {ms:>9.3f} ms {row['images_per_s']:>10.0f} img/s {row['tflops']:>8.3f} TFLOP/s "
                  f"floor/time {ft:>6}  err {row['max_abs_err_vs_eager_fp32']:.2e} "
                  f"D rel {100 * row['denoised_rel_l2_vs_eager_fp32']:.3f} %  (first call {row['first_call_s']:.1f}s)",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - record and go on
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            print(f"{label:<22} failed: {row['error']}", flush=True)
        rows.append(row)

    def fresh():
        m = LSN(model.config).to(dev)
        m.load_state_dict(model.state_dict())
        return m.eval()

    cuda = dev == "cuda"
    if "eager-fp32" in wanted:
        add("eager-fp32", lambda: _nograd(model, x))
    if "eager-bf16-cl" in wanted and cuda:
        m_cl = fresh().to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def eager_cl():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                return m_cl(x_cl, validate=False)
        add("eager-bf16-cl", eager_cl)
    if "compile" in wanted:
        m_c = fresh()
        if cuda:
            m_c = m_c.to(memory_format=torch.channels_last)
        compiled = torch.compile(m_c, mode=args.compile_mode)
        x_c = x.contiguous(memory_format=torch.channels_last) if cuda else x

        def run_compiled():
            with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=cuda):
                return compiled(x_c, validate=False)
        add(f"compile-{args.compile_mode}", run_compiled)
    for label, fused, graph, convs, f32tail in (("graph-unfused", False, True, False, False),
                                                ("fused", True, False, False, False),
                                                ("fused-graph", True, True, False, False),
                                                ("fused-graph-f32tail", True, True, False, True),
                                                ("fused-conv", True, False, True, False),
                                                ("fused-conv-graph", True, True, True, False)):
        if label not in wanted or (graph and not cuda):
            continue
        try:
            runner = FastSeparator(fresh(), B, H, W, device=dev, fused=fused, cuda_graph=graph, fused_convs=convs,
                                   float32_tail=f32tail)
        except Exception as e:  # noqa: BLE001
            rows.append({"model": spec, "variant": label, "error": f"{type(e).__name__}: {e}"[:300]})
            print(f"{label:<22} failed: {rows[-1]['error']}")
            continue
        add(label, lambda runner=runner: runner(x))

    by = {r["variant"]: r for r in rows if "ms" in r}
    comp = by.get(f"compile-{args.compile_mode}")
    best = min((by[k] for k in ("fused-graph", "fused-conv-graph", "fused", "fused-conv") if k in by),
               key=lambda r: r["ms"], default=None)
    if comp and best:
        notes.append(f"{spec}: {best['variant']} vs compile-{args.compile_mode}: {comp['ms'] / best['ms']:.2f}x "
                     "(target >= 1.3x on an H100-class GPU)")
    meta = {"model": spec, "params": model.num_parameters, "refine_channels": refine, "gflop_per_batch": flops / 1e9,
            "peak_bf16_tflops": peak / 1e12 if peak else None}
    return {"meta": meta, "rows": rows, "notes": notes}


def write_results(out: str, meta: dict, runs: list[dict]) -> None:
    """results.json and results.md for every model measured so far (rewritten after each model,
    so that a run cut off by a time limit keeps what it finished)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "models": runs}, f, indent=1)
    lines = ["# LSN inference benchmark", "", f"* command: `{meta['command']}`", f"* date: {meta['date']}",
             f"* device: **{meta['device']}**", f"* versions: {meta['versions']}",
             f"* input {tuple(meta['input'])}; timing: median of {meta['repeats']} calls after {meta['warmup']} "
             "warm-up calls; FLOPs by torch.utils.flop_counter"]
    for run in runs:
        m = run["meta"]
        refiner = f", refiner {m['refine_channels']} channels" if m["refine_channels"] else ""
        lines += ["", f"## {m['model']}: {m['params'] / 1e6:.2f} M parameters{refiner}, "
                      f"{m['gflop_per_batch']:.1f} GFLOP per batch", "",
                  "| variant | ms / batch | images/s | TFLOP/s | floor/time | max abs err vs eager fp32 "
                  "| D rel L2 vs eager fp32 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in run["rows"]:
            if "ms" in r:
                ft = f"{r['floor_over_time']:.3f}" if r.get("floor_over_time") is not None else "-"
                lines.append(f"| {r['variant']} | {r['ms']:.3f} | {r['images_per_s']:.0f} | {r['tflops']:.3f} | {ft} | "
                             f"{r['max_abs_err_vs_eager_fp32']:.2e} | {100 * r['denoised_rel_l2_vs_eager_fp32']:.3f} % |")
            else:
                lines.append(f"| {r['variant']} | failed: {r.get('error', '')[:100]} | | | | | |")
        lines += [""] + [f"* {n}" for n in run["notes"]]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--model", default="default,shipped",
                    help="comma-separated: tiny | small | default (random weights of that config) | shipped (the "
                         "packaged weights, with their refiner) | path to a .safetensors")
    ap.add_argument("--variants", default=",".join(ALL))
    ap.add_argument("--compile-mode", default="max-autotune")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device", file=sys.stderr)
        return 2
    specs = [m for m in args.model.split(",") if m]
    models = {}
    for spec in specs:  # every name checked before anything is timed
        try:
            models[spec] = load_model(spec)
        except (ValueError, OSError) as e:
            print(f"--model {spec}: {e}", file=sys.stderr)
            return 2
    warmup = args.warmup if args.warmup is not None else (10 if dev == "cuda" else 1)
    repeats = args.repeats if args.repeats is not None else (30 if dev == "cuda" else 3)
    torch.manual_seed(0)
    x = lf.phantom.generate(args.batch, size=args.size, spacing_mm=0.1, seed=0)[0]
    x = lf.compose(x, detector=lf.Detector(), seed=0).to(dev)  # realistic noisy attenuation input
    date = _dt.datetime.now().strftime("%Y-%m-%d")
    out = args.out or os.path.join("benchmarks", "results", f"{date}-{dev}-lsn")
    meta = {"command": "python benchmarks/bench_lsn.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": _dt.datetime.now().isoformat(timespec="seconds"), "device": device_name(dev),
            "versions": versions(), "input": list(x.shape), "warmup": warmup, "repeats": repeats}
    runs = []
    for spec in specs:
        torch.manual_seed(0)
        runs.append(bench_model(spec, models[spec].to(dev).eval(), x, args, dev, warmup, repeats))
        write_results(out, meta, runs)
        for n in runs[-1]["notes"]:
            print("note:", n)
    print("results:", out)
    return 0


def _nograd(model, x):
    with torch.no_grad():
        return model(x, validate=False)


if __name__ == "__main__":
    sys.exit(main())
