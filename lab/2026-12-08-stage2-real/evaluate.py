"""Recomposition error, bone fraction, soft-layer contour and flags of an LSN on the real stage-2 crops
(prepare.py's OUT/{train,heldout}) and on the 9 hand-located dev joints; phantom quality via
lsn_fast.model.evaluate (bone PSNR, JSW MAE on held-out phantoms).

Usage: python lab/2026-12-08-stage2-real/evaluate.py WEIGHTS OUT [--phantom]
(WEIGHTS: a .safetensors or a shipped name; prints one JSON line per set)
"""
import json
import os
import sys
import warnings

import numpy as np
import torch

import lsn_fast as lf
from lsn_fast import io

warnings.simplefilter("ignore")
torch.set_num_threads(2)
W, OUT = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "..", "..", "shared", "real-dev")
model = lf.LSN.pretrained(W)


def stats(name, x):
    _, q = lf.separate(x, model=model, spacing_mm=0.1, axis=(-1.0, 0.0), return_quality=True)
    r = q.recomposition_error.numpy()
    sc = q.soft_contour.numpy()
    print(json.dumps({"set": name, "n": int(x.shape[0]), "recomp_median": round(float(np.median(r)), 4),
                      "recomp_p90": round(float(np.percentile(r, 90)), 4), "recomp_max": round(float(r.max()), 4),
                      "bone_fraction_median": round(float(np.median(q.bone_fraction.numpy())), 4),
                      "soft_contour_median": round(float(np.nanmedian(sc)), 4),
                      "flagged": int(q.flagged.sum())}), flush=True)


from safetensors.torch import load_file

for key in ("train", "heldout"):
    stats(key, load_file(os.path.join(OUT, key, f"{key}.safetensors"))["images"])
crops = []
for r in json.load(open(os.path.join(REAL, "joints.json"))):
    c, p = np.array(r["center_xy"], float), np.array(r["proximal_point_xy"], float)
    u = (p - c) / np.linalg.norm(p - c)
    rad = io.read_radiograph(os.path.join(REAL, r["file"]), spacing_mm=r["spacing_mm"], kind="presentation-anchored")
    crops.append(io.crop_roi(rad, c, size=256, out_spacing_mm=0.1,
                             angle_deg=float(np.degrees(np.arctan2(u[0], -u[1])))).image.reshape(1, 1, 256, 256))
dev = torch.cat(crops)
stats("dev joints (joints.json)", dev)
# JSW read by eye on the 6 DHA joints (see README: zoomed crop + three column profiles, each margin at
# the midpoint of its intensity step, mean of the columns at x = -1, 0, +1 mm); the RSNA crops are
# too ambiguous (edge-enhancement halos, growth plates) to read
HAND = {"dha3167_midPIP": 1.40, "dha3167_midDIP": 1.30, "dha3167_idxPIP": 1.35, "dha3177_midPIP": 1.70,
        "dha3229_midPIP": 1.25, "dha3231_midPIP": 0.95}
st, q = lf.separate(dev, model=model, spacing_mm=0.1, axis=(-1.0, 0.0), return_quality=True)
jsw, det = lf.measure_jsw(st, return_details=True)
print("| joint | recomposition | bone fraction | flagged | JSW layers mm | JSW by eye mm |")
print("|---|---|---|---|---|---|")
names = [r["name"] for r in json.load(open(os.path.join(REAL, "joints.json")))]
for k, nm in enumerate(names):
    j = float(jsw[k])
    print(f"| {nm} | {100 * float(q.recomposition_error[k]):.1f} % | {100 * float(q.bone_fraction[k]):.1f} % | "
          f"{'yes' if bool(q.flagged[k]) else 'no'} | {'NaN (' + ','.join(det.reasons[k]) + ')' if j != j else f'{j:.3f}'} | "
          f"{HAND.get(nm, '-')} |")
errs = [abs(float(jsw[k]) - HAND[nm]) for k, nm in enumerate(names) if nm in HAND and float(jsw[k]) == float(jsw[k])]
print(json.dumps({"set": "dev joints: JSW layers vs by eye (DHA)", "n": len(errs),
                  "mae_mm": round(sum(errs) / max(1, len(errs)), 3)}))
if "--phantom" in sys.argv:
    from lsn_fast.model.evaluate import evaluate

    res = evaluate(model, n=32, size=256)
    print(json.dumps({"set": "phantom held-out (eval-lsn, n=32, wide)",
                      **{k: round(float(res[k]), 4) for k in ("bone_psnr_db", "jsw_mae_mm", "recomposition_rel") if k in res}}))
