"""How much noise do the two visits of a JSN pair share? Real vs synthesized pairs, medium data.

    python lab/2026-12-02-five-percent-anatomy/pair_noise.py [SEED]

For each pair: the high-pass of each visit (x − 3×3 box mean), then the largest normalized
cross-correlation over whole-pixel offsets within ±3 px (the repositioning is ≤ 2 px). Real
follow-ups have their own detector noise, so only edges correlate; carried families copy the
source's noise, exactly with whole-pixel moves. A high value is a registration shortcut that
the real test pairs do not offer.
"""
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def high(x):
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def best_ncc(a, b, r=3):
    a, b = high(a)[..., r:-r, r:-r], high(b)
    best = torch.full((a.shape[0],), -1.0)
    H, W = a.shape[-2:]
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            bb = b[..., r + dy:r + dy + H, r + dx:r + dx + W]
            aa, bc = a - a.mean((1, 2, 3), keepdim=True), bb - bb.mean((1, 2, 3), keepdim=True)
            ncc = (aa * bc).sum((1, 2, 3)) / (aa.flatten(1).norm(dim=1) * bc.flatten(1).norm(dim=1)).clamp_min(1e-12)
            best = torch.maximum(best, ncc)
    return best


def main(seed=0):
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks.experiment import Synthesizer, experiment_data
    from probe import config

    cfg = config("medium")
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    print(f"real test pairs: best high-pass NCC {best_ncc(test['base'][:64], test['follow'][:64]).mean():.3f}")
    for bone, moves in (("upper", "linear"), ("both", "linear"), ("upper", "integer"), ("both", "integer")):
        syn = Synthesizer(bank, train["jsw"][low], cfg, images=train["base"][low], bone=bone, moves=moves)
        a, b, _ = syn.pair_batch(64, torch.Generator().manual_seed(5))
        print(f"carried pairs, bone={bone}, moves={moves}: best high-pass NCC {best_ncc(a, b).mean():.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
