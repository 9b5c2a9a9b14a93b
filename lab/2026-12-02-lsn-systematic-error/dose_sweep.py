"""v6 on the wide phantoms at fixed doses (n0 2e3 to 1e6), no scatter, blur 0.3 or 0.8 px:
its recomposition error against the noisy input's own (does the error shrink with the dose?)."""
import dataclasses, os, sys, torch
import lsn_fast as lf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import N, nrm, wide_v6  # noqa: E402

st, det, images, model = wide_v6()
clean = st.attenuation()
for blur in (0.3, 0.8):
    for n0 in (2e3, 1e4, 3e4, 1e5, 1e6):
        d = dataclasses.replace(det, n0=torch.full((N,), n0), scatter=torch.zeros(N), blur_sigma_px=torch.full((N,), blur),
                                electronic_sigma=torch.full((N,), 2.0))
        imgs = lf.compose(st, detector=d, seed=5)
        with torch.no_grad():
            D = model(imgs).denoised[:, 0]
        print(f"blur {blur} n0 {n0:8.0f}: input {100*(nrm(imgs[:,0]-clean)/nrm(clean)).mean():6.3f} %   v6 {100*(nrm(D-clean)/nrm(clean)).mean():6.3f} %")
