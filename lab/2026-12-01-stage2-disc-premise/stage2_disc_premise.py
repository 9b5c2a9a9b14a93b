"""Does the stage-2 discriminator's premise hold on layers whose truth we know?

Stage 2 (``lsn_fast.train.stage2_losses``) trains the soft layer under the bones to "look like
soft tissue elsewhere", judged by ``SoftDiscriminator`` on 4×4 patches. That only pulls towards
the truth if the *true* soft layer under the bones is indistinguishable from the rest. This
script trains the trainer's own discriminator (same class, same patch labels, same loss, Adam as
in the trainer) to tell the two apart on

* the true soft layers of a stage-2 setting (phantoms, so the truth is known),
* the true soft layers with bone leaked in or out (± ``LEAK`` × the bone layers): what a wrong
  separation looks like,
* the soft layers separated by LSN weights given with ``--weights`` (each a file; optional),

and reports the area under the ROC curve of its patch logits on held-out images
(0.5: indistinguishable, 1: perfectly told apart).

    python lab/2026-12-01-stage2-disc-premise/stage2_disc_premise.py --setting ra --weights lsn_fast/weights/lsn_default.safetensors \
        --out lab/DATE-stage2-disc-premise
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from lsn_fast.model.lsn import load_weights, separate
from lsn_fast.experiments.stage2_transfer import SETTINGS, setting_sample
from lsn_fast.model.train import SoftDiscriminator, _patch_labels, discriminator_loss

LEAK = 0.3


def patch_auc(logits: torch.Tensor, under: torch.Tensor, valid: torch.Tensor) -> float:
    """ROC AUC of ``logits`` for the label ``under`` over the patches where ``valid`` (ties: average rank)."""
    s, y = logits.flatten()[valid.flatten() > 0].double(), under.flatten()[valid.flatten() > 0]
    order = s.argsort()
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=s.dtype)
    values, counts = s.unique(return_counts=True)
    for v in values[counts > 1]:  # average rank over ties
        ranks[s == v] = ranks[s == v].mean()
    npos = float(y.sum())
    nneg = y.numel() - npos
    return float((ranks[y > 0].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def discriminator_auc(soft_tr, masks_tr, img_tr, soft_te, masks_te, img_te, steps: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    disc = SoftDiscriminator()
    opt = torch.optim.AdamW(disc.parameters(), lr=1e-4, betas=(0.5, 0.999))  # the trainer's: lr × 0.5 of 2e-4
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, soft_tr.shape[0], (8,), generator=g)
        loss = discriminator_loss(disc, soft_tr[i], masks_tr[i], img_tr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        under, valid = _patch_labels(masks_te, img_te)
        return patch_auc(disc(soft_te), under, valid)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="ra")
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-test", type=int, default=16)
    p.add_argument("--steps", type=int, default=500, help="discriminator steps per variant (batch 8)")
    p.add_argument("--weights", nargs="*", default=[], help="LSN weight files whose separated soft layers are judged too")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for results.json / results.md")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    tr, im, mk, _ = setting_sample(a.n_train, 256, 777, a.setting)  # the stage-2 experiment's training seed
    te, imt, mkt, _ = setting_sample(a.n_test, 256, 778, a.setting)
    bone = lambda st: (st.upper + st.lower).unsqueeze(1)  # noqa: E731
    variants = {
        "true soft layer": (tr.soft.unsqueeze(1), te.soft.unsqueeze(1)),
        f"true + {LEAK} x bone (bone leaked into soft)": (tr.soft.unsqueeze(1) + LEAK * bone(tr), te.soft.unsqueeze(1) + LEAK * bone(te)),
        f"true - {LEAK} x bone (soft leaked into bone)": (tr.soft.unsqueeze(1) - LEAK * bone(tr), te.soft.unsqueeze(1) - LEAK * bone(te)),
    }
    for w in a.weights:
        model = load_weights(w).eval()
        with torch.no_grad():
            variants[f"separated by {os.path.basename(w)}"] = (separate(im, model, 0.1, batch_size=8).soft.unsqueeze(1),
                                                               separate(imt, model, 0.1, batch_size=8).soft.unsqueeze(1))
    rows = []
    for name, (s_tr, s_te) in variants.items():
        auc = discriminator_auc(s_tr, mk, im, s_te, mkt, imt, a.steps)
        rows.append({"soft layer": name, "held-out patch AUC": round(auc, 3)})
        print(f"{name:<55} AUC {auc:.3f}", flush=True)
    res = {"setting": a.setting, "n_train": a.n_train, "n_test": a.n_test, "steps": a.steps, "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1)}
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(res, f, indent=1)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(f"Stage-2 discriminator premise, setting `{a.setting}`: held-out patch AUC of SoftDiscriminator "
                    f"trained {a.steps} steps to tell 'under a bone' from 'elsewhere' (0.5 = indistinguishable)\n\n"
                    "| soft layer | AUC |\n|---|---:|\n" + "".join(f"| {r['soft layer']} | {r['held-out patch AUC']:.3f} |\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
