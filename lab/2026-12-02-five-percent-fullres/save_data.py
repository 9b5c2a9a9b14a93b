import torch, sys
torch.set_num_threads(1)
from lsn_fast.tasks.experiment import FivePercentConfig, experiment_data
cfg = FivePercentConfig(fractions=(0.05, 1.0), steps=400, batch_size=24, realism_n=200, realism_steps=150)
seed = int(sys.argv[1])
train, test, order, n_low = experiment_data(cfg, seed)
torch.save({"train": train, "test": test, "order": order, "n_low": n_low}, f"/tmp/ana/data128_s{seed}.pt")
print("ok", seed)
