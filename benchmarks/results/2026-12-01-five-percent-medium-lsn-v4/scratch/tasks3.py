import torch, time, sys
import torch.nn.functional as F
torch.set_num_threads(1)
import lsn_fast as lf
from lsn_fast.tasks import experiment as E
from lsn_fast.tasks._common import tensor_source, mixed_source, naive_augment
cfg = E.FivePercentConfig.quick(); cfg = E.replace(cfg, n_train=2000, n_test=400, steps=400)
seed = int(sys.argv[1]); variants = sys.argv[2].split(","); tasks = sys.argv[3].split(",") if len(sys.argv) > 3 else ["jsw","jsn","svdh"]
train, test, order, n_low = E.experiment_data(cfg, seed); low = order[:n_low]  # n_low = 100 here
lsn = lf.LSN.pretrained()
bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)

def rigid(L, ang, flip):
    B = L.shape[0]
    rot = torch.deg2rad(ang)
    sx = torch.where(flip, -1.0, 1.0)
    c, s = torch.cos(rot), torch.sin(rot)
    theta = torch.stack([torch.stack([c * sx, -s, torch.zeros(B)], -1), torch.stack([s * sx, c, torch.zeros(B)], -1)], 1)
    return F.grid_sample(L, F.affine_grid(theta, list(L.shape), align_corners=False), mode="bilinear", padding_mode="border", align_corners=False)

class PoseSynth(E.Synthesizer):
    def __init__(self, *a, max_rot=8.0, **k):
        super().__init__(*a, **k); self.max_rot = max_rot; self._pose = None
    def _draw_pose(self, B, g):
        return (torch.rand(B, generator=g) * 2 - 1) * self.max_rot, torch.rand(B, generator=g) < 0.5
    def _render(self, idx, target, g, reposition=None):
        B = idx.shape[0]; sp = self.bank.spacing_mm
        shift = (target - self.labels[idx]) / sp
        params = E._detector_params(g, B, self.ranges)
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        st = self.bank[idx].shifted(shift)
        if reposition is not None:
            st = E._translate_stack(st, reposition)
        ang, fl = self._pose if self._pose is not None else self._draw_pose(B, g)
        L = rigid(torch.stack([st.soft, st.upper, st.lower], 1).float(), ang, fl).clamp_min(0)
        st = lf.LayerStack(L[:, 0], L[:, 1], L[:, 2], sp, validate=False)
        return lf.compose(st, detector=E._detector(params), seed=seed)
    def pair_batch(self, batch, g):
        self._pose = self._draw_pose(batch, g)
        try:
            return super().pair_batch(batch, g)
        finally:
            self._pose = None

real_cache = {}
for task in tasks:
    real = tensor_source(*E._real_data(task, train, low))
    for v in variants:
        t0 = time.time()
        opts = v.split("+")
        rot = next((float(o[3:]) for o in opts if o.startswith("rot")), None)
        frac = next((int(o[1:]) / 100 for o in opts if o.startswith("f")), 0.5)
        syn = E.Synthesizer(bank, train["jsw"][low], cfg) if rot is None else PoseSynth(bank, train["jsw"][low], cfg, max_rot=rot)
        aug = naive_augment(pair=(task == "jsn")) if "aug" in opts else None
        if v == "d":
            m = E._train_task(task, E._real_data(task, train, low), cfg, seed, augment=aug or naive_augment(pair=(task == "jsn")))
        else:
            m = E._train_task(task, mixed_source(real, E._synth_fn(task, syn), frac), cfg, seed, augment=aug)
        met = E._evaluate(task, m, test, cfg)[0]
        key = "accuracy" if task == "svdh" else "mae"
        print(f"seed {seed} {task} {v:20s} {key} {met[key]:.4f} ({time.time()-t0:.0f}s)", flush=True)
