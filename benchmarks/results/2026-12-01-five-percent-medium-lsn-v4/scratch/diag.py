import torch, time
torch.set_num_threads(1)
import lsn_fast as lf
from lsn_fast.tasks import experiment as E
from lsn_fast.tasks._common import tensor_source, mixed_source, naive_augment
rec = []
orig = E._detector_params
def rec_params(g, n, ranges):
    p = orig(g, n, ranges); rec.append((ranges is E.TEST_DETECTOR, p)); return p
E._detector_params = rec_params
cfg = E.FivePercentConfig.quick(); cfg = E.replace(cfg, n_train=2000, n_test=400, steps=400)
seed = 0
train, test, order, n_low = E.experiment_data(cfg, seed); low = order[:n_low]  # n_low = 100 here
tp = [p for t, p in rec if t][0]  # baseline image's detector
lsn = lf.LSN.pretrained()
bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)
syn = E.Synthesizer(bank, train["jsw"][low], cfg)
res = {}
t0=time.time()
m = E._train_task("jsw", E._real_data("jsw", train, order), cfg, seed); res["a"] = E._evaluate("jsw", m, test, cfg)[1]
m = E._train_task("jsw", mixed_source(tensor_source(*E._real_data("jsw", train, low)), syn.jsw_batch, 0.5), cfg, seed); res["c1"] = E._evaluate("jsw", m, test, cfg)[1]
m = E._train_task("jsw", E._real_data("jsw", train, low), cfg, seed, augment=naive_augment()); res["d"] = E._evaluate("jsw", m, test, cfg)[1]
print("train time", time.time()-t0)
err = {k: (v - test["jsw"]).abs() for k, v in res.items()}
n0 = tp["n0"]; blur = tp["blur_sigma_px"]; sc = tp["scatter"]; el = tp["electronic_sigma"]
def split(name, x, edges):
    print(f"--- by {name}")
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = (x >= lo) & (x < hi)
        print(f"{name} [{lo:g},{hi:g}) n={int(s.sum()):3d} " + " ".join(f"{k}={float(e[s].mean()):.4f}" for k, e in err.items()))
print("overall", {k: round(float(e.mean()),4) for k,e in err.items()})
split("n0", n0, [1e3, 3e3, 3e4, 1.01e5])
split("blur", blur, [0.2, 0.4, 0.8, 1.21])
split("scatter", sc, [0, 0.05, 0.121])
split("elec", el, [0, 3, 6.01])
split("jsw", test["jsw"], [0, 0.5, 1, 2, 3.01])
inrange = (n0>=3e3)&(n0<3e4)&(blur>=0.4)&(blur<0.8)&(sc<0.05)&(el<3)
print("all-in-train-range n=", int(inrange.sum()), {k: round(float(e[inrange].mean()),4) for k,e in err.items()})
