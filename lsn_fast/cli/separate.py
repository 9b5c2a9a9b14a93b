"""``lsn-fast separate``: the finger joints of a radiograph (found, or one given) into their three layers, with
per-joint quality gates."""

from __future__ import annotations

import argparse
import os

from lsn_fast.cli.common import UsageError, positive_float, positive_int


def parse_xy(v: str) -> tuple[float, float]:
    try:
        x, y = (float(t) for t in v.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels, got {v!r}") from None
    return x, y


def _one(lf, io, viz, rad, center, angle, args, out_dir, model, label):
    """Crop, separate and report one joint; returns its record."""
    import torch

    roi = io.crop_roi(rad, center, size=args.size, spacing_mm=rad.spacing_mm, out_spacing_mm=0.1, angle_deg=angle)
    stack, q = lf.separate(roi.image, model=model, spacing_mm=roi.spacing_mm, axis=(-1.0, 0.0), return_quality=True)
    os.makedirs(out_dir, exist_ok=True)
    qual = q.row(0)
    if roi.inside_fraction < 0.9:
        qual["flagged"] = True
        qual["reasons"].append(f"only {100 * roi.inside_fraction:.0f} % of the crop lies inside the image")
    # the flags travel with the layers: JSWStream and `lsn-fast synth` refuse a flagged stack
    stack.save(os.path.join(out_dir, "layers.safetensors"), flagged=torch.tensor([bool(qual["flagged"])]),
               reasons=[qual["reasons"]])
    sheet = viz.layer_sheet(stack, roi.image, os.path.join(out_dir, "layers.png"), titles=[label])
    jsw = lf.measure_jsw(stack)
    rec = {"joint": label, "center_xy": [round(float(c), 2) for c in center], "angle_deg": round(float(angle), 2),
           "crop_size": args.size, "crop_spacing_mm": roi.spacing_mm, "source_spacing_mm": rad.spacing_mm,
           "jsw_mm": None if torch.isnan(jsw).any() else round(float(jsw[0]), 4), "quality": qual,
           "recomposition_rel_error": qual["recomposition_error"], "out": out_dir, "sheet": str(sheet)}
    if args.full:
        full = {name: roi.paste_back(getattr(stack, name)[0]) for name in ("soft", "upper", "lower")}
        lf.LayerStack(full["soft"], full["upper"], full["lower"], rad.spacing_mm, validate=False).save(
            os.path.join(out_dir, "layers_full.safetensors"))
    flag = "  FLAGGED: " + "; ".join(qual["reasons"]) if qual["flagged"] else ""
    jtxt = "n/a" if rec["jsw_mm"] is None else f"{rec['jsw_mm']:.3f} mm"
    print(f"{label:>12s}  JSW {jtxt}  recomposition {100 * qual['recomposition_error']:.1f} %  bone "
          f"{100 * qual['bone_fraction']:.1f} %  consistency {qual['layer_consistency']:.2f}{flag}")
    return rec


def cmd_separate(args) -> int:
    import json
    import warnings

    import lsn_fast as lf
    from lsn_fast import io, viz
    from lsn_fast.io.locate import LocateError, locate_joints

    rad = io.read_radiograph(args.image, spacing_mm=args.spacing, kind=args.kind)
    H, W = rad.image.shape
    meta = {"image": os.path.abspath(args.image), "conversion": rad.source.get("conversion"),
            "spacing_mm": rad.spacing_mm, "spacing_source": rad.source.get("spacing_source")}
    if args.center is not None:
        if rad.spacing_mm is None:
            raise UsageError(f"{args.image} carries no pixel spacing: give --spacing MM")
        if not (0 <= args.center[0] < W and 0 <= args.center[1] < H):
            raise UsageError(f"--center {args.center[0]:g},{args.center[1]:g} lies outside the {W}x{H} image")
        targets = [("joint", args.center, args.angle, args.out)]
    else:  # find every joint: orientation estimated, spacing from anatomy when the file has none
        try:
            hand = locate_joints(rad, spacing_mm=rad.spacing_mm)
        except LocateError as e:
            raise UsageError(f"{args.image}: {e}; give --center X,Y and --angle") from None
        if rad.spacing_mm is None:
            if hand.spacing_mm is None:
                raise UsageError(f"{args.image} carries no pixel spacing and none could be estimated: give --spacing MM")
            warnings.warn(f"{args.image}: no pixel spacing in the file; estimated from anatomy as "
                          f"{hand.spacing_mm:.4f} mm +- {100 * hand.spacing_rel_uncertainty:.0f} % (1 sigma): JSW "
                          "values carry that relative uncertainty; give --spacing MM if you know it", stacklevel=2)
            rad.spacing_mm = hand.spacing_mm
            meta.update(spacing_mm=hand.spacing_mm, spacing_source="anatomy",
                        spacing_rel_uncertainty=hand.spacing_rel_uncertainty)
        meta["locator_notes"] = hand.notes
        targets = [(j.name, j.center_xy, j.angle_deg, os.path.join(args.out, j.name)) for j in hand.joints]
        print(f"found {len(targets)} joints (fingertips towards ({hand.fingertip_direction[0]:+.2f}, "
              f"{hand.fingertip_direction[1]:+.2f}); spacing {rad.spacing_mm:.4f} mm, {meta['spacing_source']})")
    model = lf.LSN.pretrained(args.weights)  # None, a shipped name or a file
    records = [_one(lf, io, viz, rad, c, a, args, d, model, name) for name, c, a, d in targets]
    meta["joints"] = records
    os.makedirs(args.out, exist_ok=True)
    if args.center is not None:  # the single-joint layout of before: one record at the top level
        meta.update({k: v for k, v in records[0].items() if k not in ("out", "sheet", "joint")})
    with open(os.path.join(args.out, "separation.json"), "w") as f:
        json.dump(meta, f, indent=1)
    n_flag = sum(r["quality"]["flagged"] for r in records)
    print(f"wrote {args.out}/separation.json ({len(records)} joint(s), {n_flag} flagged)")
    return 0


def add_separate_parser(sub) -> None:
    """Register the ``separate`` subcommand on an argparse sub-parsers object."""
    sp = sub.add_parser("separate", help="separate the finger joints of a radiograph (DICOM/PNG/JPEG/TIFF/MetaImage/NRRD) into three layers",
                        epilog="examples:\n  lsn-fast separate hand.mha --out joints/      (every joint found)\n"
                               "  lsn-fast separate hand.dcm --center 812,1450 --angle 184 --out joint_pip2/",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("image", help="DICOM, PNG, JPEG, TIFF, MetaImage (.mha/.mhd) or NRRD radiograph")
    sp.add_argument("--center", type=parse_xy, default=None,
                    help="joint centre X,Y in image pixels (default: find every MCP/PIP/DIP of fingers 2-5)")
    sp.add_argument("--angle", type=float, default=0.0,
                    help="with --center: finger tilt from vertical in degrees, crop_roi convention (180 for a "
                         "fingers-up hand: proximal bone on top); without --center it is estimated per joint")
    sp.add_argument("--size", type=positive_int, default=256, help="crop size in px at 0.1 mm (default 256)")
    sp.add_argument("--spacing", type=positive_float, default=None, help="pixel spacing in mm (PNG/TIFF, or to override DICOM)")
    sp.add_argument("--kind", choices=("auto", "raw", "presentation", "presentation-anchored", "attenuation"), default="auto",
                    help="intensity conversion (lsn_fast.io.readers docstring)")
    sp.add_argument("--weights", default=None, help="LSN weights: a .safetensors file or a shipped name, 'default' (the default; "
                    "tuned on 25.6 mm fields of view), 'small-fov' (for ~12.8 mm crops) or 'real-s2' (experimental: "
                    "stage 2 on real radiographs, recomposes real crops 4-5x better; see the model card)")
    sp.add_argument("--full", action="store_true", help="also map the layers back onto the full image grid")
    sp.add_argument("--out", required=True, help="output directory")
    sp.set_defaults(func=cmd_separate)
