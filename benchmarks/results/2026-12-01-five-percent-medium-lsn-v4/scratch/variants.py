import torch, time, sys, math
import torch.nn.functional as F
torch.set_num_threads(1)
import lsn_fast as lf
from lsn_fast.tasks import experiment as E
from lsn_fast.tasks._common import tensor_source, mixed_source, naive_augment
cfg = E.FivePercentConfig.quick(); cfg = E.replace(cfg, n_train=2000, n_test=400, steps=400)
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["base","soft","rot","scale","lower","all"]
train, test, order, n_low = E.experiment_data(cfg, seed); low = order[:n_low]  # n_low = 100 here
lsn = lf.LSN.pretrained()
bank = lf.separate(train["base"][low], lsn, spacing_mm=cfg.spacing_mm)
syn = E.Synthesizer(bank, train["jsw"][low], cfg)
B0 = syn.bank
sp = B0.spacing_mm

def rigid(layers, g, max_deg, flip):
    # layers (B,3,H,W); rotate about the centre, optional horizontal flip (JSW invariant)
    B = layers.shape[0]
    rot = (torch.rand(B, generator=g) * 2 - 1) * math.radians(max_deg)
    sx = torch.where(torch.rand(B, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(B)
    c, s = torch.cos(rot), torch.sin(rot)
    theta = torch.stack([torch.stack([c * sx, -s, torch.zeros(B)], -1), torch.stack([s * sx, c, torch.zeros(B)], -1)], 1)
    grid = F.affine_grid(theta, list(layers.shape), align_corners=False)
    return F.grid_sample(layers, grid, mode="bilinear", padding_mode="border", align_corners=False)

def make_batch(batch, g, opts):
    n = B0.batch_size
    i = torch.randint(0, n, (batch,), generator=g)
    k = torch.randint(0, n, (batch,), generator=g) if "soft" in opts else i
    j = torch.randint(0, n, (batch,), generator=g) if "lower" in opts else i
    st = lf.LayerStack(B0.soft[k], B0.upper[i], B0.lower[j], sp, B0.axis[i], validate=False)
    lab = syn.labels[i].clone()
    if "lower" in opts:
        m = lf.measure_jsw(st)
        ok = torch.isfinite(m) & (m >= 0)
        # fallback: own lower bone
        lower = torch.where(ok[:, None, None], B0.lower[j], B0.lower[i])
        st = lf.LayerStack(B0.soft[k], B0.upper[i], lower, sp, B0.axis[i], validate=False)
        lab = torch.where(ok, m, lab)
    target = E._uniform(g, batch, *cfg.jsw_range)
    z = E._uniform(g, batch, 0.85, 1.15) if "zoom" in opts else torch.ones(batch)
    st = st.shifted((target / z - lab) / sp)
    L = torch.stack([st.soft, st.upper, st.lower], 1).float()
    if "rot" in opts:
        L = rigid(L, g, 15.0, True)
    if "rot10" in opts:
        L = rigid(L, g, 10.0, True)
    if "rot15nf" in opts:
        L = rigid(L, g, 15.0, False)
    if "flip" in opts:
        L = rigid(L, g, 0.0, True)
    if "zoom" in opts:  # zoom about the centre by z: every length, JSW included, times z
        theta = torch.zeros(batch, 2, 3); theta[:, 0, 0] = 1 / z; theta[:, 1, 1] = 1 / z
        L = F.grid_sample(L, F.affine_grid(theta, list(L.shape), align_corners=False), mode="bilinear", padding_mode="border", align_corners=False)
    if "scale" in opts:
        L = L * torch.stack([E._uniform(g, batch, 0.8, 1.25), E._uniform(g, batch, 0.8, 1.25), E._uniform(g, batch, 0.8, 1.25)], 1)[:, :, None, None]
    st = lf.LayerStack(L[:, 0].clamp_min(0), L[:, 1].clamp_min(0), L[:, 2].clamp_min(0), sp, validate=False)
    params = E._detector_params(g, batch, E.TRAIN_DETECTOR)
    s = int(torch.randint(0, 2**62, (1,), generator=g))
    return lf.compose(st, detector=E._detector(params), seed=s), target

real = tensor_source(*E._real_data("jsw", train, low))
for v in variants:
    t0 = time.time()
    opts = set(["soft","rot","scale","lower"]) if v == "all" else set(v.split("+"))
    if v.startswith("d"):
        m = E._train_task("jsw", E._real_data("jsw", train, low), cfg, seed, augment=naive_augment(max_rot_deg=float(v[1:])))
        met = E._evaluate("jsw", m, test, cfg)[0]
        print(f"seed {seed} {v:24s} mae {met['mae']:.4f} rmse {met['rmse']:.4f} ({time.time()-t0:.0f}s)", flush=True)
        continue
    if v == "base":
        src = syn.jsw_batch
    else:
        src = lambda b, g, o=opts: make_batch(b, g, o)
    frac = 0.75 if "f75" in opts else 0.9 if "f90" in opts else 0.5
    aug = naive_augment(max_rot_deg=15.0) if "aug" in opts else naive_augment(max_rot_deg=8.0) if "aug8" in opts else None
    m = E._train_task("jsw", mixed_source(real, src, frac), cfg, seed, augment=aug)
    met = E._evaluate("jsw", m, test, cfg)[0]
    print(f"seed {seed} {v:24s} mae {met['mae']:.4f} rmse {met['rmse']:.4f} ({time.time()-t0:.0f}s)", flush=True)
