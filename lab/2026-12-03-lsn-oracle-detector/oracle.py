"""Is v6's avoidable recomposition error the price of not knowing the detector? (2026-12-03)

The systematic-error study (``../2026-12-02-lsn-systematic-error/``) found that v6 over-sharpens
sharp inputs (ringing at every cortical outline, 1.12 % on a noise-free blur-0.3 input that is
itself within 0.03 % of the truth) and stays at ~1 % at every dose: it behaves like a blind
deconvolver that hedges between blur widths. If that is the avoidable part, a model *told* the
detector (blur σ, scatter-to-primary ratio, dose, electronic noise) should get well below the same
model trained the same way without being told.

This script is that paired test. It fine-tunes v6 exactly like the committed ``ctrl`` run of
``../2026-12-02-lsn-v8-edge-loss/`` (same seed, data, schedule, losses, 8,000 steps from v6 at
lr 2e-4, EMA 0.999, 1 CPU thread) with one change: the stem and the refiner's first convolution
get 4 extra input channels holding the sample's detector parameters as constant maps
(``blur_sigma_px``, ``10 · scatter``, ``log10(n0) − 4``, ``electronic_sigma / 5``), their weights
zero at the start, so the model starts as v6 exactly. It then evaluates both on the held-out
``wide`` and ``train`` sets (32 images each, the committed evaluation's phantoms and detectors),
giving the oracle model each image's true parameters.

    OMP_NUM_THREADS=1 python lab/2026-12-03-lsn-oracle-detector/oracle.py train  # ~50 min
    OMP_NUM_THREADS=1 python lab/2026-12-03-lsn-oracle-detector/oracle.py eval   # ~1 min

Prediction (PREDICTION.md, written before the run).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time

import torch
import torch.nn as nn

import lsn_fast.train as T
from lsn_fast import LSN, separate
from lsn_fast.compose import compose
from lsn_fast.evaluate import _heldout, score

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join("runs", "lsn_oracle_detector")
K = 4  # conditioning channels


def features(det, n: int) -> torch.Tensor:
    """(n, K) conditioning features of a Detector's per-sample parameters."""
    p = det.params(n)  # columns PARAM_COLUMNS: n0, scatter, scatter_sigma_px, blur_sigma_px, electronic_sigma
    return torch.stack([p[:, 3], 10 * p[:, 1], torch.log10(p[:, 0]) - 4, p[:, 4] / 5], 1).float()


class Holder:
    cond: torch.Tensor | None = None


class CondConv(nn.Module):
    """``conv`` with K extra input channels: the holder's (B, K) features as constant maps.
    The new weights start at zero, so the module starts equal to ``conv``."""

    def __init__(self, conv: nn.Conv2d, holder: Holder):
        super().__init__()
        self.holder = holder
        self.conv = nn.Conv2d(conv.in_channels + K, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, : conv.in_channels] = conv.weight
            self.conv.bias.copy_(conv.bias)

    @property
    def weight(self):  # LSN.forward reads stem.weight.dtype / refine.net[0].weight.dtype
        return self.conv.weight

    def forward(self, x):
        c = self.holder.cond.to(x.device, x.dtype)
        maps = c[:, :, None, None].expand(x.shape[0], K, x.shape[2], x.shape[3])
        return self.conv(torch.cat([x, maps], 1))


def oracle_model(base: LSN) -> tuple[LSN, Holder]:
    m = copy.deepcopy(base)
    h = Holder()
    m.stem = CondConv(m.stem, h)
    m.refine.net[0] = CondConv(m.refine.net[0], h)
    return m, h


def ctrl_config() -> T.TrainConfig:
    """The committed ctrl run's flags (../2026-12-02-lsn-v8-edge-loss/README.md), no output dir."""
    return T.TrainConfig(stage=1, model="small", steps=8000, crop=256, batch=1, lr=2e-4, warmup=100, seed=5, pool=64,
                         refresh=400, ema=0.999, bone_scale=(0.5, 1.5), soft_scale=(0.7, 1.5), scatter=(0.0, 0.15),
                         loss_weights={"recon_rel": 1.0, "lap": 1.0}, log_every=0, ckpt_every=1000, progress=False,
                         device="cpu")


def train() -> None:
    torch.set_num_threads(1)
    model, holder = oracle_model(LSN.pretrained())
    orig = T.stage1_batch

    def batch_with_cond(pool, step, cfg, device):  # T.stage1_batch, keeping the detector's parameters
        g = T._gen(cfg.seed, step, 2)
        layers, axis = pool.batch(step, cfg.batch, cfg.crop, g, bone_scale=cfg.bone_scale, soft_scale=cfg.soft_scale)
        det = T.random_detector(cfg.batch, g, None if cfg.scatter is None else {"scatter": tuple(cfg.scatter)})
        st = T._stack(layers, pool.spacing_mm, axis)
        image = compose(st, detector=det, seed=T._mix(cfg.seed, step, 3))
        holder.cond = features(det, cfg.batch)
        return {"image": image.to(device), "layers": layers.to(device), "axis": axis.to(device)}

    # the copy must draw exactly what the library does: check on a few steps against the original
    pool = T.PhantomPool(5, 64, 256, 400)
    cfg = ctrl_config()
    for k in (0, 1, 399, 400):
        a, b = orig(pool, k, cfg, "cpu"), batch_with_cond(pool, k, cfg, "cpu")
        assert all(torch.equal(a[n], b[n]) for n in a), k
    T.stage1_batch = batch_with_cond
    os.makedirs(RUN, exist_ok=True)
    t0 = time.perf_counter()
    tr = T.Trainer(ctrl_config(), model)
    log = open(os.path.join(RUN, "log.jsonl"), "w")
    while tr.step_idx < tr.cfg.steps:
        rec = tr.step()
        if rec["step"] % 10 == 0:
            log.write(json.dumps({**rec, "time": time.time()}) + "\n")
            log.flush()
        if rec["step"] % 1000 == 0:
            print(f"step {rec['step']} loss {rec['loss']:.4f} recon_rel {rec.get('recon_rel', 0):.4f} "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    ema = copy.deepcopy(tr.model)
    ema.load_state_dict(tr.ema)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, os.path.join(RUN, "ema.safetensors"))
    print(f"done in {time.perf_counter() - t0:.0f}s", flush=True)


def evaluate_pair(n: int = 32) -> dict:
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    model, holder = oracle_model(LSN.pretrained())
    model.load_state_dict(load_file(os.path.join(RUN, "ema.safetensors")))
    model.eval()
    ctrl = LSN.pretrained(os.path.join("runs", "lsn_v8_ctrl", "model.safetensors")).eval()
    v6 = LSN.pretrained().eval()
    out = {}
    for ranges in ("wide", "train"):
        st, info, images = _heldout(n, 256, 10_000, ranges)
        det = info["detector"]
        holder.cond = features(det, n)
        row = {}
        for name, m in (("v6", v6), ("ctrl", ctrl), ("oracle", model)):
            with torch.no_grad():
                pred = separate(images, m, st.spacing_mm, batch_size=n)
            r = score(pred, st, info["jsw_mm"], images, detector=det)
            row[name] = {k: r[k] for k in ("recomposition_rel", "recomposition_detector_rel", "bone_psnr_db",
                                           "soft_psnr_db", "bone_ssim", "jsw_mae_mm")}
            row[name]["per_sample_recomposition"] = [round(float(v), 6) for v in r["per_sample"]["recomposition_rel"]]
            print(ranges, name, {k: round(v, 5) for k, v in row[name].items() if not isinstance(v, list)}, flush=True)
        row["detector"] = {k: [round(float(v), 5) for v in det.params(n)[:, i]]
                           for i, k in enumerate(("n0", "scatter", "scatter_sigma_px", "blur_sigma_px", "electronic_sigma"))}
        out[ranges] = row
    with open(os.path.join(HERE, "eval.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    {"train": train, "eval": evaluate_pair}[sys.argv[1]]()
