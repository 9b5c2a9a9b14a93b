"""Realism of five ways to make LSN families, before texture carry became the experiment's default.

    OMP_NUM_THREADS=1 python realism_variants.py quick SEED   # FivePercentConfig.quick() data
    OMP_NUM_THREADS=1 python realism_variants.py full SEED    # 128² px at 0.1 mm, 2000 train, realism on 400

Same data, split, RealismCritic and budget as the experiment's realism check (``_realism``), one
seed per call. Variants (the synthesized class):
  lsn_detector     the plain LSN layers, moved, through a new training-range detector (the old way);
  oracle           the phantoms' true layers through a new detector;
  y_layers_linear  layers carrying their share of the residual (image − layers), moved with linear
                   interpolation, composed without a detector (what LayerStack.with_residual does);
  y_layers_cubic   the same with Keys cubic interpolation;
  D_linear+r_int   plain layers moved sub-pixel, their residual shares moved by the rounded shift;
  control          σ = 1 px blurred real images (must be near 1).
Results in README.md beside this file.
"""
import sys, time, torch
import lsn_fast as lf
from lsn_fast.tasks import experiment as ex
torch.set_num_threads(1)
full = len(sys.argv) > 1 and sys.argv[1] == "full"
cfg = ex.FivePercentConfig(steps=400, n_train=2000, synthesis="carry") if full else ex.FivePercentConfig.quick()
if full:
    cfg = ex.FivePercentConfig(synthesis="carry", size=128, spacing_mm=0.1, n_train=2000, n_test=40, realism_n=400, realism_steps=300, batch_size=32)
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
t0 = time.time()
train, test, order, n_low = ex.experiment_data(cfg, seed)
low = order[:n_low]
lsn = lf.LSN.pretrained()
bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)
y = train["base"][low][:, 0]
D = bank.soft + bank.upper + bank.lower
eps = 1e-4
air = D < eps
Dc = D.clamp_min(eps)
p = [torch.where(air, torch.ones_like(D), bank.soft / Dc), torch.where(air, torch.zeros_like(D), bank.upper / Dc),
     torch.where(air, torch.zeros_like(D), bank.lower / Dc)]
r = y - D
print("resid std", float(r.std()), "y std", float(y.std()), time.time() - t0)
ybank = lf.LayerStack(y * p[0], y * p[1], y * p[2], bank.spacing_mm, bank.resolved_axis(), validate=False)
rbank = lf.LayerStack(r * p[0], r * p[1], r * p[2], bank.spacing_mm, bank.resolved_axis(), validate=False)
labels = train["jsw"][low]

class NoDet(ex.Synthesizer):
    def __init__(self, bank, labels, cfg, resid=None, interp="linear"):
        super().__init__(bank, labels, cfg)
        self.resid = None if resid is None else lf.LayerStack(resid.soft, resid.upper, resid.lower, resid.spacing_mm, self.bank.axis, validate=False)
        self.interp = interp
    def _render(self, idx, target, g, reposition=None):
        shift = (target - self.labels[idx]) / self.bank.spacing_mm
        ex._detector_params(g, idx.shape[0], self.ranges)  # keep generator use comparable
        out = self.bank[idx].shifted(shift, interp=self.interp).attenuation()
        if self.resid is not None:
            out = out + self.resid[idx].shifted(torch.round(shift)).attenuation()
        return out.unsqueeze(1)

pool = order[n_low:][: cfg.realism_n]
real = train["base"][pool]
res = {}
res["lsn_detector"] = ex._realism(real, ex.Synthesizer(bank, labels, cfg), cfg, seed)
res["oracle"] = ex._realism(real, ex.Synthesizer(train["stack"][low], labels, cfg), cfg, seed)
res["y_layers_linear"] = ex._realism(real, NoDet(ybank, labels, cfg), cfg, seed)
res["y_layers_cubic"] = ex._realism(real, NoDet(ybank, labels, cfg, interp="cubic"), cfg, seed)
res["D_linear+r_int"] = ex._realism(real, NoDet(bank, labels, cfg, resid=rbank), cfg, seed)
res["control"] = ex._realism_control(real, cfg, seed)
print(res, time.time() - t0)
