"""Real front end on the dev images: recomposition / bone fraction / quality flag per dev joint,
old normalization ('presentation') vs the anchored conversion ('presentation-anchored'), and the
locator's error on the DHA landmarks. Reads ../shared/real-dev (skips when absent); CPU, shipped
weights v13. Usage: python lab/2026-12-07-real-front-end/run.py [DATA_DIR]"""
import json, os, sys, time, warnings
import numpy as np
import torch

import lsn_fast as lf
from lsn_fast import io
from lsn_fast.io.locate import locate_joints

torch.set_num_threads(1)
warnings.simplefilter("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
D = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "real-dev")
if not os.path.isdir(D):
    print(f"skip: {D} absent"); sys.exit(0)
model = lf.LSN.pretrained()
out = {"joints": [], "locator": []}
rows = []
for r in json.load(open(os.path.join(D, "joints.json"))):
    c, p = np.array(r["center_xy"], float), np.array(r["proximal_point_xy"], float)
    u = (p - c) / np.linalg.norm(p - c)
    ang = float(np.degrees(np.arctan2(u[0], -u[1])))
    rec = {"name": r["name"]}
    for kind in ("presentation", "presentation-anchored"):
        rad = io.read_radiograph(os.path.join(D, r["file"]), spacing_mm=r["spacing_mm"], kind=kind)
        roi = io.crop_roi(rad, c, size=256, out_spacing_mm=0.1, angle_deg=ang)
        st, q = lf.separate(roi.image, model=model, spacing_mm=0.1, axis=(-1.0, 0.0), return_quality=True)
        jsw = float(lf.measure_jsw(st)[0])
        rec[kind] = {**q.row(0), "jsw_mm": round(jsw, 3)}
    out["joints"].append(rec)
# locator on the DHA landmarks
IDX = {"index": (21, 22, 23), "middle": (25, 26, 27), "ring": (29, 30, 31), "little": (33, 34, 35)}
lms = {}
for line in open(os.path.join(D, "dha_landmarks.csv")):
    v = [float(t) for t in line.split(",")]
    lms[int(v[0])] = np.array(v[1:]).reshape(-1, 2)
for i, pts in lms.items():
    rad = io.read_radiograph(os.path.join(D, f"dha_{i}.mha"), kind="presentation-anchored")
    t0 = time.perf_counter()
    hj = locate_joints(rad)
    hj_nosp = locate_joints(rad.image)  # spacing estimated from anatomy
    dt = time.perf_counter() - t0
    for fn, ks in IDX.items():
        for kind, k in zip(("MCP", "PIP", "DIP"), ks):
            j = hj.get(f"{fn}_{kind}")
            rec = {"image": i, "joint": f"{fn}_{kind}", "found": j is not None}
            if j is not None:
                rec["err_center_mm"] = float(np.hypot(*(np.array(j.center_xy) - pts[k])) * rad.spacing_mm)
                rec["err_landmark_mm"] = float(np.hypot(*(np.array(j.landmark_xy) - pts[k])) * rad.spacing_mm)
                nxt = {"DIP": ks[1], "PIP": ks[0]}.get(kind)
                if nxt is not None:
                    v = pts[nxt] - pts[k]; w = np.array(j.proximal_xy) - np.array(j.center_xy)
                    rec["orientation_cos"] = float(v @ w / np.linalg.norm(v) / np.linalg.norm(w))
            out["locator"].append(rec)
    out.setdefault("spacing", []).append({"image": i, "file_mm": rad.spacing_mm, "anatomy_mm": hj_nosp.spacing_mm,
                                          "seconds_both_calls": round(dt, 2)})
for f in ("rsna_14735.png",):
    rad = io.read_radiograph(os.path.join(D, f), kind="presentation-anchored")
    hj = locate_joints(rad)
    out["spacing"].append({"image": f, "file_mm": None, "readme_estimate_mm": 0.22, "anatomy_mm": hj.spacing_mm})
    # orientation on the hand-located joints of the RSNA image
    for r in json.load(open(os.path.join(D, "joints.json"))):
        if r["file"] != f:
            continue
        name = r["name"].split("_")[1]
        fn = {"mid": "middle", "ring": "ring", "idx": "index"}[name[:-3] if name[:-3] != "mid" else "mid"]
        j = hj.get(f"{fn}_{name[-3:]}")
        if j is not None:
            c, p = np.array(r["center_xy"], float), np.array(r["proximal_point_xy"], float)
            w = np.array(j.proximal_xy) - np.array(j.center_xy)
            out["locator"].append({"image": f, "joint": f"{fn}_{name[-3:]}", "found": True,
                                   "err_center_mm": float(np.hypot(*(np.array(j.center_xy) - c)) * 0.22),
                                   "orientation_cos": float((p - c) @ w / np.linalg.norm(p - c) / np.linalg.norm(w)),
                                   "note": "hand-located joints.json record, spacing 0.22 assumed"})
json.dump(out, open(os.path.join(HERE, "results.json"), "w"), indent=1)
print(json.dumps(out)[:200])
