"""Small runs of every path of the cuda backend, for compute-sanitizer (memcheck / racecheck /
synccheck) and as a quick smoke test. Exits non-zero if a result disagrees with the reference.

    python benchmarks/cuda_smoke.py
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 python benchmarks/cuda_smoke.py
    compute-sanitizer --tool racecheck --error-exitcode 1 python benchmarks/cuda_smoke.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from lsn_fast.physics.reference import synthesize_reference  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer cases (racecheck is slow)")
    args = ap.parse_args(argv)
    from lsn_fast.ops.backends.cuda import synthesize_cuda

    dev = "cuda"
    g = torch.Generator().manual_seed(0)
    # (N, H, W, storage, out, interp, noise, output, blur, scatter, es, noncontig, move_lower)
    cases = [
        (2, 33, 47, torch.float32, torch.float32, "linear", 1, 0, 0.6, 0.0, 0.0, False, False),   # fused, R=2
        (2, 64, 64, torch.float32, torch.float32, "linear", 1, 0, 0.0, 0.0, 0.0, False, False),   # fused, R=0
        (1, 5, 3, torch.bfloat16, torch.bfloat16, "cubic", 2, 0, 1.3, 0.0, 2.0, True, True),    # tiny, cubic
        (3, 40, 37, torch.float16, torch.float32, "cubic", 2, 1, 5.3, 0.0, 1.0, False, False),   # fused, R=16
        (2, 41, 29, torch.float32, torch.float16, "linear", 1, 0, 6.0, 0.0, 2.0, True, False),   # multi-pass blur
        (2, 50, 45, torch.bfloat16, torch.float32, "linear", 2, 0, 0.6, 0.05, 2.0, False, True),  # multi-pass scatter
        (2, 30, 30, torch.float32, torch.float32, "linear", 0, 0, 0.0, 0.0, 0.0, False, False),  # noiseless params
    ]
    if args.quick:
        cases = cases[:1] + cases[2:4]
    worst = 0.0
    for (N, H, W, st, od, interp, nm, om, blur, spr, es, nc, ml) in cases:
        if nc:
            base = torch.rand(3, N, W + 1, 2 * H, generator=g).to(dev, st)
            bank = [base[i, :, :W, ::2].transpose(1, 2) for i in range(3)]
        else:
            bank = list(torch.rand(3, N, H, W, generator=g).to(dev, st).unbind(0))
        B = 3
        index = torch.randint(0, N, (B,), generator=g).to(dev)
        disp = (torch.randn(B, 2, generator=g) * 3).to(dev)
        params = torch.tensor([[1e3, spr, 4.0, blur, es]] * B, device=dev)
        kw = dict(move_lower=ml, seed=2**64 - 7, sample_index=torch.tensor([0, 2**32 + 1, 99], device=dev),
                  noise_mode=nm, output_mode=om, interp=interp, min_counts=0.5, out_dtype=od)
        out = synthesize_cuda(*bank, index, disp, params, **kw)
        ref = synthesize_reference(*bank, index, disp, params, **kw)
        none = synthesize_cuda(*bank, index, disp, None, interp=interp, out_dtype=od)
        none_ref = synthesize_reference(*bank, index, disp, None, interp=interp, out_dtype=od)
        torch.cuda.synchronize()
        d = ((out.double() - ref.double()).abs() / (ref.double().abs() + 1)).max().item()
        d0 = ((none.double() - none_ref.double()).abs() / (none_ref.double().abs() + 1)).max().item()
        frac = ((out.double() - ref.double()).abs() > 1e-4 * (ref.double().abs() + 1)).double().mean().item()
        print(f"N={N} {H}x{W} {str(st)[6:]}->{str(od)[6:]} {interp} noise={nm} out={om} blur={blur} scatter={spr} "
              f"es={es} noncontig={nc} move_lower={ml}: max rel diff {d:.2e} (noiseless {d0:.2e}), "
              f"frac > 1e-4: {frac:.4f}")
        tol = 1e-2 if (st != torch.float32 or od != torch.float32) else 1e-5
        if d0 > tol or (nm != 2 and d > tol) or (nm == 2 and frac > 0.05):
            worst = max(worst, d, d0)
            print("   ^ MISMATCH")
    # errors come back as exceptions, not crashes
    try:
        synthesize_cuda(*bank, torch.tensor([N], device=dev), disp[:1], None)
        print("index out of range was not caught")
        return 1
    except ValueError as e:
        print(f"bad index -> ValueError: {e}")
    print("cuda_smoke: OK" if worst == 0 else "cuda_smoke: MISMATCH")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
