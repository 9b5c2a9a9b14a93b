"""Does undoing an unsharp mask (k, sigma) before the anchored conversion lower recomposition on
the dev joints? Usage: python lab/2026-12-07-real-front-end/unsharp.py [DATA_DIR]"""
import json, os, sys, warnings
import numpy as np
import torch
import lsn_fast as lf
from lsn_fast import io
from lsn_fast.io.presentation import presentation_to_attenuation

torch.set_num_threads(1)
warnings.simplefilter("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
D = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "real-dev")
if not os.path.isdir(D):
    print(f"skip: {D} absent"); sys.exit(0)
model = lf.LSN.pretrained()
recs = json.load(open(os.path.join(D, "joints.json")))
raw = {f: io.read_radiograph(os.path.join(D, f), spacing_mm=0.1, kind="attenuation").image.numpy()
       for f in sorted({r["file"] for r in recs})}
res = {}
for k, s_mm in [(0, 1.0), (0.5, 1.0), (0.5, 3.0), (1.0, 2.0)]:
    errs = []
    for r in recs:
        v = raw[r["file"]]
        y, _ = presentation_to_attenuation(v, unsharp=None if k == 0 else (k, s_mm / r["spacing_mm"]))
        c, p = np.array(r["center_xy"], float), np.array(r["proximal_point_xy"], float)
        u = (p - c) / np.linalg.norm(p - c)
        roi = io.crop_roi(torch.from_numpy(y), c, size=256, spacing_mm=r["spacing_mm"], out_spacing_mm=0.1,
                          angle_deg=float(np.degrees(np.arctan2(u[0], -u[1]))))
        _, q = lf.separate(roi.image, model=model, spacing_mm=0.1, return_quality=True)
        errs.append(float(q.recomposition_error[0]))
    res[f"k={k} sigma={s_mm}mm"] = {"median": float(np.median(errs)), "max": max(errs), "per_joint": errs}
    print(k, s_mm, np.median(errs), max(errs))
json.dump(res, open(os.path.join(HERE, "unsharp.json"), "w"), indent=1)
