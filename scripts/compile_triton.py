"""Ahead-of-time compile of every Triton kernel variant for a GPU target, without a GPU.

The interpreter (``TRITON_INTERPRET=1``) runs the kernels' *semantics* on the CPU, but not the
compiler: a construct that only the compiled path rejects (types, libdevice calls, layouts,
shared-memory or register blow-ups) would first show on a GPU. This script builds each variant
the launchers use (``ASTSource`` -> TTIR -> TTGIR -> LLVM -> PTX -> cubin with Triton's bundled
ptxas) for ``--arch`` (default sm_90 = H100/H200) and prints registers, stack and shared memory
per variant (Triton's bundled ``cuobjdump --dump-resource-usage``) and spill bytes (its ``ptxas -v``). CI runs it through
tests/test_triton_compile.py.

    python scripts/compile_triton.py              # all variants, table on stdout
    python scripts/compile_triton.py --arch 100   # another compute capability
Exit status: 0 if every variant compiled, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

if os.environ.get("TRITON_INTERPRET") == "1":  # the kernels must be JIT functions, not interpreted
    del os.environ["TRITON_INTERPRET"]
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated (silences its warning)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import lsn_fast.ops.kernels.lsn_fused as kf  # noqa: E402  (decorated as JIT functions: TRITON_INTERPRET is unset above)
import lsn_fast.ops.kernels.synthesize as ks  # noqa: E402

PTR = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16", "i64": "*i64"}


def signature(fn, pointer_types: dict, scalar_types: dict | None = None) -> dict:
    """Triton signature: pointers from ``pointer_types`` (arg -> '*fp32'...), constexprs, others i32."""
    consts = {p.name for p in fn.params if p.is_constexpr}
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = pointer_types.get(name, "*fp32")
        else:
            sig[name] = (scalar_types or {}).get(name, "i32")
    return sig


def synthesize_variants():
    """(label, fn, signature, constexprs, num_warps) for the launch paths of lsn_fast/ops/kernels/synthesize.py."""
    fn = ks._synthesize_kernel
    scal = {"seed_lo": "i64", "seed_hi": "i64", "min_counts": "fp32"}
    base = dict(CUBIC=False, MOVE_LOWER=False, SRC_Q=False, DET=True, NOISE=2, RNG=True, ESIG=True, FINISH=True,
                OUT_COUNTS=False, OUT_BF16=False, PRECISE_EXP=True, FAST_BM=False)
    out = []

    def add(label, rmax, storage="fp32", outd="fp32", **over):
        cap = ks.BLOCK_CAPS["plain" if rmax == 0 else "blur" if rmax <= 4 else "wide"]
        eh, ew = ks._block(256, rmax, cap[0]), ks._block(256, rmax, cap[1])  # a 256^2 image
        c = dict(base, EH=eh, EW=ew, RMAX=rmax, **over)
        c["OUT_BF16"] = outd == "bf16"
        ptrs = {"soft_ptr": PTR[storage], "upper_ptr": PTR[storage], "lower_ptr": PTR[storage],
                "index_ptr": "*i64", "sidx_ptr": "*i64", "out_ptr": PTR[outd]}
        out.append((f"synthesize/{label}", fn, signature(fn, ptrs, scal), c, cap[2]))

    add("shift+BL (no detector)", 0, DET=False, NOISE=0, RNG=False, ESIG=False)
    add("poisson linear", 0)
    add("poisson cubic move-lower", 0, CUBIC=True, MOVE_LOWER=True)
    add("gaussian counts", 0, NOISE=1, OUT_COUNTS=True)
    add("poisson bf16 storage+out", 0, storage="bf16", outd="bf16")
    add("poisson fp16 storage", 0, storage="fp16")
    add("poisson fast box-muller", 0, FAST_BM=True)
    add("poisson blur r2", 2)
    add("poisson blur r4 bf16", 4, storage="bf16", outd="bf16")
    add("poisson blur r16 (wide)", 16)
    add("multi-pass: q only", 0, NOISE=0, RNG=False, ESIG=False, FINISH=False, OUT_COUNTS=True)
    add("multi-pass: from q", 2, SRC_Q=True)
    return out


def lsn_fused_variants():
    out = []
    for dt in ("fp32", "bf16"):
        for ch_inner in (False, True):
            fn = kf._gn_stats_kernel
            out.append((f"gn_stats/{dt}/{'NHWC' if ch_inner else 'NCHW'}", fn, signature(fn, {"x_ptr": PTR[dt]}),
                        dict(BLOCK=1024, CH_INNER=ch_inner), 4))
            fn = kf._gn_apply_kernel
            sig = signature(fn, {"x_ptr": PTR[dt], "out_ptr": PTR[dt], "w_ptr": "*fp32", "b_ptr": "*fp32"},
                            {"eps": "fp32"})
            out.append((f"gn_apply+silu/{dt}/{'NHWC' if ch_inner else 'NCHW'}", fn, sig,
                        dict(BLOCK=1024, KP=64, CH_INNER=ch_inner, SILU=True, AFFINE=True), 4))
    fn = kf._recompose_kernel
    for dt in ("fp32", "bf16"):
        for correct in (False, True):  # with a refiner's correction (bf16 under autocast)
            sig = signature(fn, {"h_ptr": PTR[dt], "y_ptr": "*fp32", "c_ptr": PTR[dt]})
            out.append((f"recompose/{dt} head{' +refiner' if correct else ''}", fn, sig,
                        dict(BLOCK=1024, CORRECT=correct), 4))
    fn = kf._gn_affine_kernel
    out.append(("gn_affine (stats -> scale/shift)", fn, signature(fn, {}, {"eps": "fp32"}),
                dict(KP=64, CB=16, AFFINE=True), 4))
    fn = kf._conv3x3_kernel
    # the small config's levels (12, 24, 48, 96 channels: padded 16, 32, 64, 128), the refiner (5 -> 16 -> 1)
    # (channel tiles: kf.conv_tiles caps them at 64, so 96 or 128 channels run as 64-channel tiles;
    # pixel tile and warps: kf.conv_config, as the launcher picks them)
    for dt, ci, co, norm, silu, res, up in (
            ("bf16", 16, 16, True, True, False, False), ("bf16", 16, 16, True, True, True, False),
            ("bf16", 32, 16, True, True, True, False), ("bf16", 32, 32, True, True, True, False),
            ("bf16", 64, 64, True, True, True, False), ("bf16", 16, 16, False, True, False, False),
            ("bf16", 32, 16, False, False, False, True), ("bf16", 64, 64, False, False, False, True),
            ("fp32", 16, 16, True, True, True, False), ("fp32", 32, 32, True, True, True, False),
            ("fp32", 64, 64, True, True, True, False)):
        block_p, warps = kf.conv_config(ci, co, torch.float32 if dt == "fp32" else torch.bfloat16)
        sig = signature(fn, {"x_ptr": PTR[dt], "w_ptr": PTR[dt], "res_ptr": PTR[dt], "out_ptr": PTR[dt]})
        label = (f"conv3x3/{dt} {ci}->{co} P{block_p}{' gn' if norm else ''}{' silu' if silu else ''}"
                 f"{' +res' if res else ''}{' up2x' if up else ''}")
        out.append((label, fn, sig, dict(BLOCK_P=block_p, CI=ci, CO=co, NORM=norm, SILU=silu, RES=res,
                                         IEEE=dt == "fp32", UPCAST=False, UP=int(up)), warps))
    fn = kf._refine_input_kernel
    for dt in ("fp32", "bf16"):
        out.append((f"refine_input/{dt} head -> {dt}", fn, signature(fn, {"h_ptr": PTR[dt], "y_ptr": "*fp32",
                                                                           "o_ptr": PTR[dt]}), dict(BLOCK=1024), 4))
    return out


def resource_usage(cubin: bytes) -> dict:
    """REG / STACK / SHARED / spills from cuobjdump, when Triton bundles it."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        r = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True)
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", r.stdout)
    return {"regs": int(m.group(1)), "stack": int(m.group(2)), "shared": int(m.group(3))} if m else {}


def spill_report(ptx: str) -> dict:
    """Spill stores / loads (bytes) from Triton's bundled ``ptxas -v`` on the kernel's PTX, when
    bundled. The stack size alone does not tell spills: Triton 3.6 inlines the precise sin/cos with
    their large-argument reduction, a 28-byte local array (a 32-byte stack frame, no spill)."""
    m = re.search(r"^\s*\.target\s+sm_(\d+)\w*", ptx, re.M)
    try:  # the ptxas Triton itself uses for this arch (3.9 emits PTX its older bundled ptxas rejects)
        from triton.backends.nvidia.compiler import get_ptxas

        tool = get_ptxas(int(m.group(1))).path if m else None
    except Exception:  # noqa: BLE001 - another Triton layout: no spill report
        tool = None
    if not tool or not os.path.exists(tool):
        return {}
    target = re.search(r"^\s*\.target\s+(sm_\w+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([tool, "-v", f"-arch={target}", src, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
    out = r.stdout + r.stderr
    if r.returncode != 0 or not re.search(r"Used \d+ registers", out):
        return {}
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)  # printed only with a stack frame
    return {"spill_stores": int(m.group(1)), "spill_loads": int(m.group(2))} if m else {"spill_stores": 0, "spill_loads": 0}


def compile_all(arch: int, only: str = "") -> list[dict]:
    target = GPUTarget("cuda", arch, 32)
    rows = []
    for label, fn, sig, consts, warps in synthesize_variants() + lsn_fused_variants():
        if only and only not in label:
            continue
        row = {"variant": label, "num_warps": warps}
        t0 = time.perf_counter()
        try:
            k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=target,
                               options={"num_warps": warps})
            row.update(ok=True, **resource_usage(k.asm["cubin"]), **spill_report(k.asm["ptx"]),
                       ptx_lines=k.asm["ptx"].count("\n"))
        except Exception as e:  # noqa: BLE001 - report every failing variant
            row.update(ok=False, error=f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300])
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability as an integer (90 = sm_90)")
    ap.add_argument("--only", default="", help="compile only variants whose label contains this")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    rows = compile_all(args.arch, args.only)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"triton {triton.__version__}, target sm_{args.arch}")
    print(f"{'variant':<42} {'warps':>5} {'regs':>5} {'stack':>6} {'spills':>6} {'shared':>7} {'ptx lines':>9} {'s':>6}")
    for r in rows:
        if r["ok"]:
            print(f"{r['variant']:<42} {r['num_warps']:>5} {r.get('regs', '?'):>5} {r.get('stack', '?'):>6} "
                  f"{r.get('spill_stores', '?'):>6} {r.get('shared', '?'):>7} {r['ptx_lines']:>9} {r['seconds']:>6.1f}")
        else:
            print(f"{r['variant']:<42} FAILED: {r['error']}")
    bad = [r for r in rows if not r["ok"]]
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
