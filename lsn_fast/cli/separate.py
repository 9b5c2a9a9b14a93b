"""``lsn-fast separate``: one joint of a radiograph into its three layers."""

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


def cmd_separate(args) -> int:
    import json

    import torch

    import lsn_fast as lf
    from lsn_fast import io, viz

    rad = io.read_radiograph(args.image, spacing_mm=args.spacing, kind=args.kind)
    if rad.spacing_mm is None:
        raise UsageError(f"{args.image} carries no pixel spacing: give --spacing MM")
    H, W = rad.image.shape
    if not (0 <= args.center[0] < W and 0 <= args.center[1] < H):
        raise UsageError(f"--center {args.center[0]:g},{args.center[1]:g} lies outside the {W}x{H} image")
    roi = io.crop_roi(rad, args.center, size=args.size, spacing_mm=rad.spacing_mm, out_spacing_mm=0.1, angle_deg=args.angle)
    model = lf.LSN.pretrained(args.weights)  # None, a shipped name or a file
    stack = lf.separate(roi.image, model=model, spacing_mm=roi.spacing_mm, axis=(-1.0, 0.0))
    os.makedirs(args.out, exist_ok=True)
    stack.save(os.path.join(args.out, "layers.safetensors"))
    recomposed = lf.compose(stack)
    sheet = viz.layer_sheet(stack, roi.image, os.path.join(args.out, "layers.png"), titles=["crop"])
    jsw = lf.measure_jsw(stack)
    meta = {"image": os.path.abspath(args.image), "center_xy": list(args.center), "angle_deg": args.angle,
            "crop_size": args.size, "crop_spacing_mm": roi.spacing_mm, "source_spacing_mm": rad.spacing_mm,
            "jsw_mm": None if torch.isnan(jsw).any() else round(float(jsw[0]), 4),
            "recomposition_rel_error": float((recomposed - roi.image).abs().mean() / roi.image.abs().mean().clamp_min(1e-12)),
            "conversion": rad.source.get("conversion")}
    if args.full:
        full = {name: roi.paste_back(getattr(stack, name)[0]) for name in ("soft", "upper", "lower")}
        lf.LayerStack(full["soft"], full["upper"], full["lower"], rad.spacing_mm, validate=False).save(
            os.path.join(args.out, "layers_full.safetensors"))
    with open(os.path.join(args.out, "separation.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {args.out}/layers.safetensors, {sheet}, separation.json (JSW {meta['jsw_mm']} mm)")
    return 0


def add_separate_parser(sub) -> None:
    """Register the ``separate`` subcommand on an argparse sub-parsers object."""
    sp = sub.add_parser("separate", help="separate one joint of a radiograph (DICOM/PNG/TIFF) into its three layers",
                        epilog="example:\n  lsn-fast separate hand.dcm --center 812,1450 --angle 4 --out joint_pip2/",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("image", help="DICOM, PNG or TIFF radiograph")
    sp.add_argument("--center", type=parse_xy, required=True, help="joint centre X,Y in image pixels")
    sp.add_argument("--angle", type=float, default=0.0, help="finger tilt from vertical in degrees (default 0)")
    sp.add_argument("--size", type=positive_int, default=256, help="crop size in px at 0.1 mm (default 256)")
    sp.add_argument("--spacing", type=positive_float, default=None, help="pixel spacing in mm (PNG/TIFF, or to override DICOM)")
    sp.add_argument("--kind", choices=("auto", "raw", "presentation", "attenuation"), default="auto", help="intensity conversion")
    sp.add_argument("--weights", default=None, help="LSN weights: a .safetensors file or a shipped name, 'default' (the default; "
                    "tuned on 25.6 mm fields of view) or 'small-fov' (for ~12.8 mm crops)")
    sp.add_argument("--full", action="store_true", help="also map the layers back onto the full image grid")
    sp.add_argument("--out", required=True, help="output directory")
    sp.set_defaults(func=cmd_separate)
