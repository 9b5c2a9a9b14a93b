"""The fused LSN kernels one at a time, at the layer shapes of a real model (issue 4, item 5).

``bench_lsn.py`` times whole forward passes; this script times each fused op against the same
computation in eager PyTorch and under ``torch.compile`` (kornia has none of these ops), so a
whole-model result can be traced to its parts:

* ``norm-act-conv`` at every distinct (Cin, Cout, H, W) of the model's ResBlock halves, the head
  and the refiner: ``conv3x3(silu(group_norm(x))) (+ residual)``.
  Rows: ``eager`` (``F.group_norm``, ``F.silu``, cuDNN ``F.conv2d``, add), ``compile``
  (``torch.compile`` of eager, default mode), ``fused-gn`` (today's default path:
  :func:`lsn_fast.fused.group_norm_act` + cuDNN), ``conv3x3_act`` (one kernel after the statistics);
* ``recompose`` (the head without a refiner) and ``refine-head`` (``refine_input`` + the corrected
  ``recompose_head``; the refiner's own convolutions are not in it) at full resolution.

Activations bf16, channels-last, batch 64 at 256² by default. ``floor`` = the bytes the op must
move (inputs read once, outputs written once) over the copy bandwidth measured at the start of the
run, so ``floor/time`` is the share of the memory roofline reached (DESIGN.md §6).

    python benchmarks/bench_lsn_kernels.py --device cuda --model shipped --out DIR
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_lsn import load_model  # noqa: E402
from lsn_traffic import module_calls  # noqa: E402

from lsn_fast.model import fused  # noqa: E402
from lsn_fast.bench import copy_bandwidth, device_name, time_fn, versions  # noqa: E402
from lsn_fast.model.lsn import LSN  # noqa: E402


def conv_shapes(model: LSN, size: int) -> list[dict]:
    """Distinct normalize-activate-convolve shapes of ``model`` at a ``size``² input."""
    probe = 64
    k = size // probe
    seen, out = set(), []
    for kind, m, si, so in module_calls(model, probe):
        H, W = si[2] * k, si[3] * k
        if kind == "res":
            halves = [(m.n1, m.c1, False), (m.n2, m.c2, True)]
        elif kind == "head":
            halves = [(model.head_norm, model.head, False)]
        else:
            continue
        for norm, conv, res in halves:
            key = (norm.num_channels, conv.out_channels, H, W, res)
            if key not in seen:
                seen.add(key)
                out.append(dict(norm=norm, conv=conv, cin=key[0], cout=key[1], H=H, W=W, res=res))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="shipped", help="tiny | small | default | shipped | path to a .safetensors "
                    "(bench_lsn.load_model)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256, help="input size (a multiple of 64)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device", file=sys.stderr)
        return 2
    if args.size % 64:
        print(f"--size: must be a multiple of 64, got {args.size}", file=sys.stderr)
        return 2
    warmup = args.warmup if args.warmup is not None else (5 if dev == "cuda" else 1)
    repeats = args.repeats if args.repeats is not None else (20 if dev == "cuda" else 2)
    dt = torch.bfloat16 if dev == "cuda" else torch.float32  # CPU: a smoke run of the code paths
    e = torch.finfo(dt).bits // 8
    try:
        model = load_model(args.model).to(dev).eval()
    except (ValueError, OSError) as ex:
        print(f"--model {args.model}: {ex}", file=sys.stderr)
        return 2
    bw = copy_bandwidth(dev, 1 << 28 if dev == "cuda" else 1 << 24) * 1e9
    name = device_name(dev)
    print(f"device: {name}; copy bandwidth {bw / 1e9:.0f} GB/s; model {args.model}; batch {args.batch}; {dt}")
    B = args.batch
    rows = []

    def run(op, shape, variant, fn, nbytes):
        try:
            ms = statistics.median(time_fn(fn, dev, warmup, repeats))
            row = dict(op=op, shape=shape, variant=variant, ms=ms, gb_s=nbytes / (ms * 1e-3) / 1e9,
                       floor_over_time=(nbytes / bw) / (ms * 1e-3))
            print(f"{op:<14} {shape:<22} {variant:<12} {ms:9.3f} ms  {row['gb_s']:7.0f} GB/s  floor/time "
                  f"{row['floor_over_time']:.3f}", flush=True)
        except Exception as ex:  # noqa: BLE001 - record and go on
            row = dict(op=op, shape=shape, variant=variant, error=f"{type(ex).__name__}: {ex}"[:200])
            print(f"{op:<14} {shape:<22} {variant:<12} failed: {row['error']}", flush=True)
        rows.append(row)

    g = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        for c in conv_shapes(model, args.size):
            norm = c["norm"]
            conv = c["conv"]
            x = torch.randn(B, c["cin"], c["H"], c["W"], generator=g).to(dev, dt).contiguous(memory_format=torch.channels_last)
            r = (torch.randn(B, c["cout"], c["H"], c["W"], generator=g).to(dev, dt)
                 .contiguous(memory_format=torch.channels_last) if c["res"] else None)
            w, b = conv.weight.to(dt), conv.bias.to(dt)
            nw, nb = norm.weight.to(dt), norm.bias.to(dt)
            shape = f"{c['cin']}->{c['cout']} {c['H']}x{c['W']}{' +res' if c['res'] else ''}"
            nbytes = (x.numel() + B * c["cout"] * c["H"] * c["W"] * (2 if c["res"] else 1)) * e

            def eager(x=x, r=r, w=w, b=b, nw=nw, nb=nb, groups=norm.num_groups):
                y = F.conv2d(F.silu(F.group_norm(x, groups, nw, nb)), w, b, padding=1)
                return y if r is None else y + r

            def fused_gn(x=x, r=r, w=w, b=b, norm=norm):
                y = F.conv2d(fused.group_norm_act(x, norm.num_groups, norm.weight.to(dt), norm.bias.to(dt)), w, b, padding=1)
                return y if r is None else y + r

            def fused_conv(x=x, r=r, conv=conv, norm=norm):
                return fused.conv3x3_act(x, conv.weight, conv.bias, norm=norm, silu=True, residual=r)

            ref = eager().float()
            run("norm-act-conv", shape, "eager", eager, nbytes)
            if not args.no_compile:
                run("norm-act-conv", shape, "compile", torch.compile(eager), nbytes)
            run("norm-act-conv", shape, "fused-gn", fused_gn, nbytes)
            run("norm-act-conv", shape, "conv3x3_act", fused_conv, nbytes)
            rows[-1]["max_abs_err_vs_eager"] = float((fused_conv().float() - ref).abs().max())
        # the head at full resolution
        H = W = args.size
        y = torch.rand(B, 1, H, W, generator=g).to(dev) * 2
        head = (torch.randn(B, 6, H, W, generator=g) * 2).to(dev, dt).contiguous(memory_format=torch.channels_last)
        corr = (torch.randn(B, 1, H, W, generator=g) * 0.1).to(dev, dt)
        px = B * H * W

        def rec_eager(y=y, head=head):
            return fused.recompose_head_reference(y, head)

        nb_rec = px * (4 + 4 * e + 4 * 4)  # y f32 + 4 head channels + (3 layers + D) f32
        run("recompose", f"{H}x{W}", "eager", rec_eager, nb_rec)
        if not args.no_compile:
            run("recompose", f"{H}x{W}", "compile", torch.compile(rec_eager), nb_rec)
        run("recompose", f"{H}x{W}", "fused", lambda: fused.recompose_head(y, head), nb_rec)

        def ref_eager(y=y, head=head, corr=corr):
            x5 = fused.refine_input_reference(y, head, dt)
            return x5, fused.recompose_head_reference(y, head, corr)

        def ref_fused(y=y, head=head, corr=corr):
            return fused.refine_input(y, head, dtype=dt), fused.recompose_head(y, head, corr)

        nb_ref = px * (4 + 4 * e + 5 * e) + px * (4 + 4 * e + e + 4 * 4)
        run("refine-head", f"{H}x{W}", "eager", ref_eager, nb_ref)
        if not args.no_compile:
            run("refine-head", f"{H}x{W}", "compile", torch.compile(ref_eager), nb_ref)
        run("refine-head", f"{H}x{W}", "fused", ref_fused, nb_ref)

    date = _dt.datetime.now().strftime("%Y-%m-%d")
    out = args.out or os.path.join("benchmarks", "results", f"{date}-{dev}-lsn-kernels")
    os.makedirs(out, exist_ok=True)
    meta = {"command": "python benchmarks/bench_lsn_kernels.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": _dt.datetime.now().isoformat(timespec="seconds"), "device": name, "versions": versions(),
            "copy_bandwidth_gb_s": bw / 1e9, "model": args.model, "batch": B, "dtype": str(dt), "warmup": warmup,
            "repeats": repeats}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = ["# Fused LSN kernels, one at a time", "", f"* command: `{meta['command']}`", f"* date: {meta['date']}",
             f"* device: **{name}**; copy bandwidth {bw / 1e9:.0f} GB/s", f"* versions: {meta['versions']}",
             f"* model {args.model}, batch {B}, activations {dt}, channels-last; median of {repeats} calls after "
             f"{warmup} warm-up calls; floor = bytes read once + written once over the copy bandwidth",
             "* kornia has no equivalent of these ops", "",
             "| op | shape | variant | ms | GB/s | floor/time |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        if "ms" in r:
            lines.append(f"| {r['op']} | {r['shape']} | {r['variant']} | {r['ms']:.3f} | {r['gb_s']:.0f} | "
                         f"{r['floor_over_time']:.3f} |")
        else:
            lines.append(f"| {r['op']} | {r['shape']} | {r['variant']} | failed: {r['error'][:80]} | | |")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("results:", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
