import torch, sys, torch.nn.functional as F
torch.set_num_threads(1)
import lsn_fast as lf
from lsn_fast.tasks.experiment import FivePercentConfig, Synthesizer, _realism, experiment_data, TRAIN_DETECTOR
which = sys.argv[1]
if which == "quick":
    cfg = FivePercentConfig.quick()
else:
    cfg = FivePercentConfig(fractions=(0.05, 1.0), steps=400, batch_size=24, realism_n=200, realism_steps=150)
lsn = lf.LSN.pretrained()
def hp(x):
    x = x.float(); sd = x.std(dim=(2, 3), keepdim=True)
    return ((x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)) / sd).abs().mean().item()
for seed in (0, 1):
    if which == "quick":
        train, test, order, n_low = experiment_data(cfg, seed)
    else:
        d = torch.load(f"/tmp/ana/data128_s{seed}.pt", weights_only=False); train, order, n_low = d["train"], d["order"], d["n_low"]
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)
    real = train["base"][order[n_low:][: cfg.realism_n]]
    out = [f"seed {seed} real hp {hp(real):.4f}"]
    for name, b in (("lsn", bank), ("oracle", train["stack"][low])):
        for bs in ((1.0, 0.5, 0.0) if name == "lsn" else (1.0,)):
            rng = dict(TRAIN_DETECTOR); rng["blur"] = tuple(v * bs for v in TRAIN_DETECTOR["blur"])
            syn = Synthesizer(b, train["jsw"][low], cfg, det_ranges=rng)
            x, _ = syn.jsw_batch(96, torch.Generator().manual_seed(5))
            out.append(f"{name} blur×{bs}: hp {hp(x):.4f} realism {_realism(real, syn, cfg, seed):.3f}")
    print(" | ".join(out), flush=True)
