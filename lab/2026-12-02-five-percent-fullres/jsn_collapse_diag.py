import torch, sys, time, torch.nn.functional as F
torch.set_num_threads(1)
from lsn_fast.tasks.jsn import SiameseJSN, quantify_jsn, _jsn_loss
from lsn_fast.tasks._common import fit, as_source
d = torch.load("/tmp/ana/data128_s1.pt", weights_only=False)
tr, te = d["train"], d["test"]
variant = sys.argv[1]
src = as_source((tr["base"], tr["follow"], tr["jsn"]))
lr, loss, seed = 2e-3, _jsn_loss, 1
if variant == "lr1e-3": lr = 1e-3
if variant == "mse":
    loss = lambda m, b: F.mse_loss(m(b[0], b[1]), b[2].float().reshape(-1))
if variant == "seed2": seed = 2
if variant.startswith("s"): seed = int(variant.split("_")[0][1:])
if "lr1" in variant: lr = 1e-3
torch.manual_seed(seed)
m = SiameseJSN(); m.scale.fill_(max(float(tr["jsn"].std()), 0.05))
if "off" in variant:
    with torch.no_grad(): m.head[-1].bias.fill_(float(tr["jsn"].mean()) / float(m.scale))
t = time.time()
h = fit(m, src, loss, steps=400, batch_size=24, lr=lr, seed=seed)
p = quantify_jsn(te["base"], te["follow"], 0.1, method="learned", model=m)
mae = (p - te["jsn"]).abs().mean().item()
print(variant, f"mae {mae:.4f} pred std {p.std():.4f} time {time.time()-t:.0f}s loss@", [round(sum(h[i:i+50])/50, 4) for i in range(0, 400, 50)])
