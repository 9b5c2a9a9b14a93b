"""Does padding a 128 px image to 256 px (the training size) rescue a 256-px-trained LSN? Centre-pads the
`eval-lsn --size 128 --ranges wide` images (32) by reflect / replicate / zeros, separates, crops back,
and scores against the true layers ("none" = lf.separate as is).

    OMP_NUM_THREADS=1 python lab/2026-12-03-lsn-small-fov/pad_probe.py NAME=WEIGHTS ... > pad_probe.txt
"""
import sys

import torch
import torch.nn.functional as F

import lsn_fast as lf
from lsn_fast.evaluate import _heldout, score
torch.set_num_threads(1)
st, info, images = _heldout(32, 128, 10_000, "wide")
def sep_pad(model, x, mode, P=256):
    ph, pw = (P-128)//2, (P-128)//2
    xp = F.pad(x, (pw, pw, ph, ph), mode=mode) if mode != "zeros" else F.pad(x, (pw,pw,ph,ph))
    with torch.no_grad():
        L = model.eval()(xp, validate=False).layers.float()[:, :, ph:ph+128, pw:pw+128].clamp_min(0)
    return lf.LayerStack(L[:,0], L[:,1], L[:,2], 0.1, None, validate=False)
for name, p in (a.split("=", 1) for a in sys.argv[1:]):
    m = lf.LSN.pretrained(p)
    for mode in ("none", "reflect", "replicate", "zeros"):
        pred = lf.separate(images, m, 0.1) if mode == "none" else sep_pad(m, images, mode)
        r = score(pred, st, info["jsw_mm"], images, detector=info.get("detector"))
        print(name, mode, {k: round(r[k],4) for k in ("bone_psnr_db","soft_psnr_db","recomposition_rel","jsw_mae_mm")}, flush=True)
