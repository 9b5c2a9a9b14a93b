"""Where v6's error on noise-free, scatter-free inputs (blur 0.3 px) lies: U-Net alone vs with the
refiner, textured vs textureless phantoms (texture=0), low-pass share, bone / edges / soft; maps."""
import dataclasses, os, sys, torch, torch.nn.functional as F
import lsn_fast as lf
from lsn_fast.phantom import generate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import N, nrm, wide_v6  # noqa: E402

st, det, images, model = wide_v6()
clean_det = dataclasses.replace(det, noise="none", electronic_sigma=torch.zeros(N), scatter=torch.zeros(N),
                                blur_sigma_px=torch.full((N,), 0.3))

def gblur(x, s):
    r = int(3 * s + 1)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * s * s)); k = k / k.sum()
    x = F.conv2d(F.pad(x[:, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[:, 0]

def run(stack, refine=True):
    imgs = lf.compose(stack, detector=clean_det, seed=1)
    clean = stack.attenuation()
    saved = model.refine
    if not refine:
        model.refine = None
    with torch.no_grad():
        D = model(imgs).denoised[:, 0]
    model.refine = saved
    err = D - clean
    e = nrm(err) / nrm(clean)
    lo = nrm(gblur(err, 2.0)) / nrm(clean)
    return e, lo, err, clean, imgs

e, lo, err, clean, imgs = run(st)
print(f"textured, refined      : {100*e.mean():.3f} %  low-pass(σ2) part {100*lo.mean():.3f} %")
e0, lo0, *_ = run(st, refine=False)
print(f"textured, U-Net D0 only: {100*e0.mean():.3f} %  low-pass part {100*lo0.mean():.3f} %")
flat, _ = generate(N, size=256, seed=10_000, tilt_deg=(-15.0, 15.0), texture=0.0)
ef, lof, errf, cleanf, _ = run(flat)
print(f"textureless, refined   : {100*ef.mean():.3f} %  low-pass part {100*lof.mean():.3f} %")
# where: bone (either bone layer > 1 % of its max) vs soft only, and edges of the bones
bone = (st.upper + st.lower) > 0.02 * (st.upper + st.lower).flatten(1).amax(1).view(-1, 1, 1)
edge = (gblur(bone.float(), 1.5) - bone.float()).abs() > 0.05
tot = err.pow(2).flatten(1).sum(1)
for name, m in (("bone", bone), ("bone edges ±~2px", edge), ("soft only", ~bone)):
    print(f"  share of squared error in {name:18s}: {float((err.pow(2) * m).flatten(1).sum(1).div(tot).mean()):.3f}   (pixels {float(m.float().mean()):.3f})")
# bias: mean signed error relative to the mean clean value
print(f"  mean signed error / mean clean: {float((err.flatten(1).mean(1) / clean.flatten(1).mean(1)).mean()):+.4f}")
print(f"  error in air/background (clean < 1e-3): {float(err[clean < 1e-3].abs().mean()):.5f}, clean mean {float(clean.mean()):.4f}")
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
idx = [23, 5, 12]
fig, ax = plt.subplots(len(idx), 4, figsize=(16, 4 * len(idx)))
for r, i in enumerate(idx):
    ax[r, 0].imshow(clean[i], cmap="gray"); ax[r, 0].set_title(f"clean A, img {i}")
    v = float(err[i].abs().quantile(0.999))
    ax[r, 1].imshow(err[i], cmap="RdBu_r", vmin=-v, vmax=v); ax[r, 1].set_title(f"D - A (noiseless input), ±{v:.3f}")
    lo_e = gblur(err[i:i+1], 2.0)[0]; v2 = float(lo_e.abs().max())
    ax[r, 2].imshow(lo_e, cmap="RdBu_r", vmin=-v2, vmax=v2); ax[r, 2].set_title(f"low-pass σ2 of error ±{v2:.3f}")
    ax[r, 3].imshow(errf[i], cmap="RdBu_r", vmin=-v, vmax=v); ax[r, 3].set_title("textureless phantom: D - A")
for a in ax.flat: a.axis("off")
plt.tight_layout(); plt.savefig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "error_maps.png"), dpi=60)
