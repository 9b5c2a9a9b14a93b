"""Does a flip self-ensemble at inference lower the LSN's errors? (CPU probe)

Each held-out image is separated as is and mirrored left-right (across the joint axis, which is
vertical within ±15°: the mirrored joint is as plausible as the original, and upper/lower bones
keep their roles); the mirrored layers are mirrored back and the two separations averaged. A
vertical flip would swap the bones' roles and put the distal bone's base on top, which the
training set never shows, so it is scored on its own for contrast (layers flipped back, upper
and lower swapped back), not used.

    OMP_NUM_THREADS=1 python lab/2026-12-03-lsn-flip-ensemble/probe.py WEIGHTS OUT.json

Scores with :func:`lsn_fast.evaluate.score` on the four sets of ``eval_all.sh`` (32 images, seed
10000, 256² px).
"""
import json
import sys

import torch

import lsn_fast as lf
from lsn_fast.evaluate import _heldout, score

KEYS = ("recomposition_rel", "bone_psnr_db", "bone_ssim", "soft_psnr_db", "jsw_mae_mm")


def flipped(images, model, sp, dims, swap):
    st = lf.separate(images.flip(dims), model, sp, batch_size=8)
    back = [d - 1 for d in dims]  # images are (B,1,H,W), layers (B,H,W)
    up, low = st.upper.flip(back), st.lower.flip(back)
    if swap:
        up, low = low, up
    return lf.LayerStack(st.soft.flip(back), up, low, sp, validate=False)


def mean(*stacks):
    n = len(stacks)
    return lf.LayerStack(*(sum(getattr(s, k) for s in stacks) / n for k in ("soft", "upper", "lower")),
                         stacks[0].spacing_mm, validate=False)


def main():
    torch.set_num_threads(1)
    model = lf.LSN.pretrained(sys.argv[1]).eval()
    out = {}
    for ranges in ("wide", "train", "shifted", "ra"):
        st, info, images = _heldout(32, 256, 10_000, ranges)
        sp = st.spacing_mm
        with torch.no_grad():
            plain = lf.separate(images, model, sp, batch_size=8)
            hflip = flipped(images, model, sp, [3], swap=False)
            vflip = flipped(images, model, sp, [2], swap=True)
            hvflip = flipped(images, model, sp, [2, 3], swap=True)
        det = info.get("detector")
        res = {}
        for name, pred in (("plain", plain), ("hflip_alone", hflip), ("plain+hflip", mean(plain, hflip)),
                           ("vflip_alone", vflip), ("all four", mean(plain, hflip, vflip, hvflip))):
            s = score(pred, st, info["jsw_mm"], images, detector=det)
            res[name] = {k: float(s[k]) for k in KEYS}
        out[ranges] = res
        print(ranges, "  ".join(f"{n}: {100 * r['recomposition_rel']:.3f} % / {r['bone_psnr_db']:.2f} dB / "
                                f"JSW {r['jsw_mae_mm']:.4f}" for n, r in res.items()), flush=True)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
