"""Is v6's ~1 % recomposition error at high dose systematic? v6 on the wide phantoms through
detectors with the noise, then scatter, then blur switched off (same per-image values otherwise)."""
import dataclasses, os, sys, torch
import lsn_fast as lf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import N, nrm, wide_v6  # noqa: E402

st, det, images, model = wide_v6()
clean = st.attenuation()

def rel(imgs):
    with torch.no_grad():
        pred = lf.separate(imgs, model, 0.1, batch_size=8)
    return nrm(pred.attenuation() - clean) / nrm(clean), nrm(imgs[:, 0] - clean) / nrm(clean)

cases = {
    "as evaluated": det,
    "no noise": dataclasses.replace(det, noise="none", electronic_sigma=torch.zeros(N)),
    "no noise, no scatter": dataclasses.replace(det, noise="none", electronic_sigma=torch.zeros(N), scatter=torch.zeros(N)),
    "no noise, no scatter, blur 0.3": dataclasses.replace(det, noise="none", electronic_sigma=torch.zeros(N), scatter=torch.zeros(N),
                                                          blur_sigma_px=torch.full((N,), 0.3)),
}
n0 = det.n0 if isinstance(det.n0, torch.Tensor) else torch.full((N,), det.n0)
hi = n0 > 3e4
for name, d in cases.items():
    imgs = images if name == "as evaluated" else lf.compose(st, detector=d, seed=10_000)
    e, inp = rel(imgs)
    print(f"{name:32s} LSN {100*e.mean():.3f} % (n0>3e4: {100*e[hi].mean():.3f}), input itself {100*inp.mean():.3f} %")
