import torch, time, sys
torch.set_num_threads(1)
import lsn_fast as lf
from lsn_fast.tasks import experiment as E
from lsn_fast.tasks._common import tensor_source, mixed_source
seed = int(sys.argv[1]); tasks = sys.argv[2].split(",")
cfg = E.replace(E.FivePercentConfig.quick(), n_train=2000, n_test=400, steps=400)
train, test, order, n_low = E.experiment_data(cfg, seed); low = order[:n_low]  # n_low = 100 here
lsn = lf.LSN.pretrained()
syn = E.Synthesizer(lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm), train["jsw"][low], cfg)
unl, _ = E._unlabelled_synthesizer(train, order, n_low, lsn, cfg)
for task in tasks:
    real_low = tensor_source(*E._real_data(task, train, low))
    key = "accuracy" if task == "svdh" else "mae"
    for name, s in (("c1", syn), ("e", unl)):
        for frac in (0.75, 0.9, 1.0):
            t0 = time.time()
            data = E._synth_fn(task, s) if frac == 1.0 else mixed_source(real_low, E._synth_fn(task, s), frac)
            m = E._train_task(task, data, cfg, seed)
            print(f"seed {seed} {task} {name} frac {frac} {key} {E._evaluate(task, m, test, cfg)[0][key]:.4f} ({time.time()-t0:.0f}s)", flush=True)
