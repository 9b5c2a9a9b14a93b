import torch, sys, time
torch.set_num_threads(1)
from lsn_fast.tasks.experiment import FivePercentConfig, _realism_control, experiment_data
which = sys.argv[1]
if which == "quick":
    cfg = FivePercentConfig.quick()
    for seed in (0, 1):
        train, test, order, n_low = experiment_data(cfg, seed)
        pool = order[n_low:][: cfg.realism_n]
        t = time.time(); print("quick", seed, _realism_control(train["base"][pool], cfg, seed), f"{time.time()-t:.0f}s", flush=True)
else:
    cfg = FivePercentConfig(fractions=(0.05, 1.0), steps=400, batch_size=24, realism_n=200, realism_steps=150)
    for seed in (0, 1):
        d = torch.load(f"/tmp/ana/data128_s{seed}.pt", weights_only=False)
        pool = d["order"][d["n_low"]:][: cfg.realism_n]
        t = time.time(); print("128", seed, _realism_control(d["train"]["base"][pool], cfg, seed), f"{time.time()-t:.0f}s", flush=True)
