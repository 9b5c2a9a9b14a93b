import torch, time, sys
torch.set_num_threads(1)
import lsn_fast as lf
from lsn_fast.tasks import experiment as E
from lsn_fast.tasks._common import tensor_source, mixed_source
seed = int(sys.argv[1]); steps = int(sys.argv[2]); task = sys.argv[3] if len(sys.argv) > 3 else "jsw"
cfg = E.replace(E.FivePercentConfig.quick(), n_train=2000, n_test=400, steps=steps)
train, test, order, n_low = E.experiment_data(cfg, seed); low = order[:n_low]  # n_low = 100 here
lsn = lf.LSN.pretrained()
syn = E.Synthesizer(lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm), train["jsw"][low], cfg)
orc = E.Synthesizer(train["stack"][low], train["jsw"][low], cfg)
unl, _ = E._unlabelled_synthesizer(train, order, n_low, lsn, cfg)
orc_all = E.Synthesizer(train["stack"][order], train["jsw"][order], cfg)
real_low = tensor_source(*E._real_data(task, train, low))
key = "accuracy" if task == "svdh" else "mae"
arms = {"a": E._real_data(task, train, order),
        "c1": mixed_source(real_low, E._synth_fn(task, syn), 0.5),
        "oracle": mixed_source(real_low, E._synth_fn(task, orc), 0.5),
        "e": mixed_source(real_low, E._synth_fn(task, unl), 0.5),
        "oracle_all": mixed_source(real_low, E._synth_fn(task, orc_all), 0.5),
        "oracle_all_only": E._synth_fn(task, orc_all)}
for name, data in arms.items():
    t0 = time.time()
    m = E._train_task(task, data, cfg, seed)
    print(f"seed {seed} steps {steps} {task} {name:16s} {key} {E._evaluate(task, m, test, cfg)[0][key]:.4f} ({time.time()-t0:.0f}s)", flush=True)
