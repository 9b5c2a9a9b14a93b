"""Stage-2 data from real hand radiographs (issue 33, item 4): every finger joint that
``locate_joints`` finds on the dev images, cropped at 256 px / 0.1 mm with the proximal bone on
top (``crop_roi``), converted with ``kind="presentation-anchored"``, plus bone masks from the
shipped LSN's own bone layers (pseudo-labels: the images have no layer ground truth).

Images listed in HOLD_OUT are left out of training: their located joints are the held-out real
evaluation set (and the hand-located joints of ../shared/real-dev/joints.json on them).
Writes OUT/train.safetensors and OUT/heldout.safetensors (train.sh moves them into OUT/train/ and
OUT/heldout/, the folders train-lsn and evaluate.py read) (images (N,1,256,256), masks
(N,2,256,256), names in the metadata). OUT must lie outside the repository: the crops are real
data and stay out of git.

Usage: python lab/2026-12-08-stage2-real/prepare.py OUT [DATA_DIR]
"""
import json
import os
import sys
import warnings

import torch

import lsn_fast as lf
from lsn_fast import io
from lsn_fast.io.locate import locate_joints
from lsn_fast.model.lsn import BONE_MASK_LEVEL

warnings.simplefilter("ignore")
torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1]
D = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..", "..", "shared", "real-dev")
HOLD_OUT = ("dha_3231.mha", "rsna_14750.png")  # one of each source
if os.path.abspath(OUT).startswith(os.path.abspath(os.path.join(HERE, "..", ".."))):
    sys.exit("OUT: must lie outside the repository (real images stay out of git)")
if not os.path.isdir(D):
    print(f"skip: {D} absent")
    sys.exit(0)
model = lf.LSN.pretrained()
sets = {"train": ([], []), "heldout": ([], [])}
for f in sorted(os.listdir(D)):
    if not f.endswith((".mha", ".png")):
        continue
    rad = io.read_radiograph(os.path.join(D, f), kind="presentation-anchored")
    try:
        hj = locate_joints(rad)
    except Exception as e:  # noqa: BLE001 - a hand the locator cannot read is reported, not fatal
        print(f"{f}: locator failed ({e})")
        continue
    key = "heldout" if f in HOLD_OUT else "train"
    for j in hj.joints:
        roi = io.crop_roi(rad, j.center_xy, size=256, spacing_mm=hj.spacing_mm, out_spacing_mm=0.1,
                          angle_deg=j.angle_deg)
        if roi.inside_fraction < 0.95:
            continue
        sets[key][0].append(roi.image.reshape(1, 1, 256, 256).float())
        sets[key][1].append(f"{f}:{j.name}")
    print(f"{f}: {len(hj.joints)} joints, spacing {hj.spacing_mm:.3f} mm ({hj.spacing_source}) -> {key}")
os.makedirs(OUT, exist_ok=True)
from safetensors.torch import save_file

for key, (imgs, names) in sets.items():
    x = torch.cat(imgs)
    st = lf.separate(x, model=model, spacing_mm=0.1, axis=(-1.0, 0.0))
    masks = torch.stack([st.upper > BONE_MASK_LEVEL, st.lower > BONE_MASK_LEVEL], 1).float()
    save_file({"images": x.contiguous(), "masks": masks.contiguous()}, os.path.join(OUT, f"{key}.safetensors"),
              metadata={"names": json.dumps(names)})
    print(f"{key}: {x.shape[0]} crops -> {os.path.join(OUT, key + '.safetensors')}")
