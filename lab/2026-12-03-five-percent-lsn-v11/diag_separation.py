"""How well do LSN weights separate the five-percent experiment's own low-label images?

The (c) arms re-synthesize families from ``lf.separate`` of the 100 labelled images of one seed
(128² px at 0.1 mm, through the training detector). This script separates exactly those images
with each given set of weights and compares with the phantom's true layers:

    OMP_NUM_THREADS=1 python lab/2026-12-03-five-percent-lsn-v11/diag_separation.py SEED NAME=WEIGHTS ...

Per weights: RMSE of each layer against the truth (line integrals, 1 = mean of the true layer's
|value|), the relative recomposition error, the axis error (degrees) against the true stack's
axis, and the JSW measured on the separated layers against the label (what the Synthesizer uses
as ``j0``): how many are measurable, MAE, bias.
"""
import sys

import torch

import lsn_fast as lf
from lsn_fast.compose import _bank_geometry
from lsn_fast.tasks.experiment import experiment_data

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/2026-12-03-five-percent-longer")
from run import config  # noqa: E402  the 4500-step run's config (data do not depend on steps)


def main(seed: int, specs: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = config(4500)
    train, _, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    truth, images, labels = train["stack"][low], train["base"][low], train["jsw"][low].float()
    t_axis, t_jsw = _bank_geometry(lf.LayerStack(truth.soft, truth.upper, truth.lower, truth.spacing_mm, None,
                                                 validate=False))
    print(f"seed {seed}: {n_low} images {tuple(images.shape)}; true layers: JSW measurable "
          f"{int(torch.isfinite(t_jsw).sum())}, MAE vs label {float((t_jsw - labels).abs().nanmean()):.4f} mm")
    print("| weights | RMSE soft | RMSE upper | RMSE lower | recomposition % | axis err ° (mean/max) "
          "| JSW measurable | JSW MAE mm | JSW bias mm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in specs:
        name, path = spec.split("=", 1)
        lsn = lf.LSN.pretrained(path)
        sep = lf.separate(images, lsn, spacing_mm=cfg.spacing_mm)
        rm = []
        for k in ("soft", "upper", "lower"):
            a, b = getattr(sep, k).float(), getattr(truth, k).float()
            rm.append(float(((a - b) ** 2).mean().sqrt() / b.abs().mean()))
        rec = lf.compose(sep).float()
        rec_true = lf.compose(truth).float()
        recomp = float(((rec - rec_true).abs().mean() / rec_true.abs().mean()) * 100)
        axis, j0 = _bank_geometry(lf.LayerStack(sep.soft, sep.upper, sep.lower, sep.spacing_mm, None, validate=False))
        cos = (axis * t_axis).sum(1).clamp(-1, 1)
        ang = torch.rad2deg(torch.acos(cos.abs()))
        ok = torch.isfinite(j0)
        err = (j0 - labels)[ok]
        print(f"| {name} | {rm[0]:.4f} | {rm[1]:.4f} | {rm[2]:.4f} | {recomp:.3f} | {float(ang.nanmean()):.2f} / "
              f"{float(ang.nan_to_num(0).max()):.2f} | {int(ok.sum())}/{n_low} | {float(err.abs().mean()):.4f} | "
              f"{float(err.mean()):+.4f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
