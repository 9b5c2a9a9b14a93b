"""JSN (and JSW from separated layers) on data the main phantom did not make (issue 34).

Pairs: (1) the main phantom (same anatomy, the JSW changed by U(0.05, 0.8) mm, a repositioning of
up to 2 px, fresh detector noise per visit); (2) the independent ray-cast renderer
(physics/raycast.render_pairs, its own detector `expose`); (3) families from the real dev joints of
../shared/real-dev: each crop separated by the shipped LSN, the residual carried
(LayerStack.with_residual), the lower bone moved towards the upper one by a known amount (whole
pixels, so the carried texture is copied, not resampled), re-composed; baseline = the same stack
unmoved, with a whole-pixel repositioning of the follow-up.

Each set is quantified with quantify_jsn's default (regions="layers": the LSN separates each visit,
partial-image POC per bone, confidence flags, NaN for flagged pairs) and, where the truth layers
exist, with the true layers given (layers=...). Also JSW from LSN-separated layers of the ray-cast
images (measure_jsw on lf.separate) against the renderer's exact gap.

Usage: python lab/2026-12-07-jsw-jsn-independent/jsn_tables.py [N] > jsn_tables.md
(CPU; N pairs per synthetic set, default 16; reads ../shared/real-dev, skips it when absent).
"""
import json
import os
import sys
import warnings

import numpy as np
import torch

import lsn_fast as lf
from lsn_fast import io
from lsn_fast.physics import raycast
from lsn_fast.physics.moves import whole_pixel_copy
from lsn_fast.physics.reference import translate
from lsn_fast.tasks.jsn import jsn_flag_reasons

warnings.simplefilter("ignore")
torch.set_num_threads(2)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 16
HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "..", "..", "shared", "real-dev")
SP = 0.1


def summary(name, jsn, det, truth):
    e = jsn - truth
    un = det["jsn_unflagged"] - truth
    flagged = det["flags"] != 0
    ok = ~flagged
    big = int(((e.abs() > 0.2) & ok).sum())
    mae = float(e[ok].abs().mean()) if bool(ok.any()) else float("nan")
    mx = float(e[ok].abs().max()) if bool(ok.any()) else float("nan")
    reasons = {}
    for r in jsn_flag_reasons(det["flags"]):
        for w in r:
            reasons[w] = reasons.get(w, 0) + 1
    return (f"| {name} | {len(truth)} | {int(ok.sum())} | {mae:.4f} | {mx:.3f} | {big} | "
            f"{float(un.abs().mean()):.4f} | {', '.join(f'{k} {v}' for k, v in sorted(reasons.items())) or '-'} |")


def phantom_pairs(n, seed=11):
    g = torch.Generator().manual_seed(seed)
    j0 = 0.8 + 1.7 * torch.rand(n, generator=g)
    d = (0.05 + 0.75 * torch.rand(n, generator=g)).minimum(j0 - 0.05)
    st0, i0 = lf.phantom.generate(n, size=256, spacing_mm=SP, seed=seed, jsw_mm=j0)
    st1, _ = lf.phantom.generate(n, size=256, spacing_mm=SP, seed=seed, jsw_mm=j0 - d)
    rep = (torch.rand(n, 2, generator=g) * 2 - 1) * 2.0
    st1 = lf.LayerStack(*(translate(t, rep) for t in (st1.soft, st1.upper, st1.lower)), SP, st1.axis, validate=False)
    det = lf.Detector(n0=2e4, blur_sigma_px=0.6, electronic_sigma=2.0)
    a = lf.compose(st0, detector=det, seed=1)
    b = lf.compose(st1, detector=det, seed=2)
    return a, b, st0, st1, d.double()


def raycast_pairs(n, seed=5, end="sphere"):
    s0, s1, info = raycast.render_pairs(n, size=256, spacing_mm=SP, seed=seed, end=end)
    return raycast.expose(s0, seed=1), raycast.expose(s1, seed=2), s0, s1, info["jsn_mm"]


def real_families():
    if not os.path.isdir(REAL):
        return None
    model = lf.LSN.pretrained()
    crops, names = [], []
    for r in json.load(open(os.path.join(REAL, "joints.json"))):
        c, p = np.array(r["center_xy"], float), np.array(r["proximal_point_xy"], float)
        u = (p - c) / np.linalg.norm(p - c)
        ang = float(np.degrees(np.arctan2(u[0], -u[1])))
        rad = io.read_radiograph(os.path.join(REAL, r["file"]), spacing_mm=r["spacing_mm"], kind="presentation-anchored")
        crops.append(io.crop_roi(rad, c, size=256, out_spacing_mm=SP, angle_deg=ang).image.reshape(1, 1, 256, 256))
        names.append(r["name"])
    img = torch.cat(crops)
    st = lf.separate(img, model=model, spacing_mm=SP, axis=(-1.0, 0.0))
    carried = st.with_residual(img)
    n = img.shape[0]
    g = torch.Generator().manual_seed(3)
    d_px = torch.randint(2, 8, (n,), generator=g).float()  # 0.2-0.7 mm of narrowing, whole pixels
    ax = torch.tensor([[-1.0, 0.0]]).expand(n, 2)
    lower = whole_pixel_copy(carried.lower, d_px[:, None] * ax)  # the lower bone moves up (closing)
    rep = torch.randint(-2, 3, (n, 2), generator=g).float()
    follow_st = lf.LayerStack(*(whole_pixel_copy(t, rep) for t in (carried.soft, carried.upper, lower)), SP, ax,
                              validate=False)
    a = lf.compose(carried)
    b = lf.compose(follow_st)
    return a, b, names, d_px.double() * SP


print(f"# JSN on pairs the main phantom did not make (N = {N} per synthetic set, CPU)\n")
print("| set | pairs | unflagged | MAE mm (unflagged) | max mm | unflagged > 0.2 mm | MAE of all before flagging | flags |")
print("|---|---|---|---|---|---|---|---|")
for name, make in (("main phantom", lambda: phantom_pairs(N)), ("ray-cast spheres", lambda: raycast_pairs(N)),
                   ("ray-cast flat", lambda: raycast_pairs(N, seed=6, end="flat"))):
    a, b, s0, s1, truth = make()
    jsn, det = lf.quantify_jsn(a, b, SP, return_details=True)
    print(summary(f"{name}, LSN layers (default)", jsn.double(), det, truth), flush=True)
    jsn, det = lf.quantify_jsn(a, b, SP, return_details=True, layers=(s0, s1))
    print(summary(f"{name}, true layers", jsn.double(), det, truth), flush=True)
    jsn, det = lf.quantify_jsn(a, b, SP, return_details=True, regions="profile")
    print(summary(f"{name}, row profile", jsn.double(), det, truth), flush=True)
fam = real_families()
if fam is None:
    print("| real-dev families | skipped: ../shared/real-dev absent |")
else:
    a, b, names, truth = fam
    jsn, det = lf.quantify_jsn(a, b, SP, return_details=True)
    print(summary("real-dev families, LSN layers (default)", jsn.double(), det, truth), flush=True)
    print("\n| real joint | true JSN mm | JSN mm | flags |\n|---|---|---|---|")
    for k, nm in enumerate(names):
        print(f"| {nm} | {float(truth[k]):.2f} | {float(jsn[k]):+.3f} | {', '.join(jsn_flag_reasons(det['flags'])[k]) or '-'} |")

print("\n# JSW from LSN-separated layers, ray-cast renderer images\n")
print("| set | n | measured | MAE mm | max mm | bias mm |\n|---|---|---|---|---|---|")
for end in ("sphere", "flat"):
    st, info = raycast.render_joints(N, size=256, spacing_mm=SP, seed=7, end=end)[:2]
    img = raycast.expose(st, seed=3)
    sep = lf.separate(img, spacing_mm=SP, axis=st.axis)
    m = lf.measure_jsw(sep)
    e = m.double() - torch.as_tensor(info["jsw_mm"])
    ok = torch.isfinite(e)
    print(f"| ray-cast {end} | {N} | {int(ok.sum())} | {float(e[ok].abs().mean()):.4f} | {float(e[ok].abs().max()):.3f} | "
          f"{float(e[ok].mean()):+.4f} |", flush=True)
