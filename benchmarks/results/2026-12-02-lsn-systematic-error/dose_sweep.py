"""v6 on the wide phantoms at fixed doses (n0 2e3 to 1e6), no scatter, blur 0.3 or 0.8 px:
its recomposition error against the noisy input's own (does the error shrink with the dose?)."""
import dataclasses, torch
import lsn_fast as lf
from lsn_fast.evaluate import _heldout
torch.set_num_threads(1)
N = 32
st, info, images = _heldout(N, 256, 10_000, "wide")
det = info["detector"]
model = lf.LSN.pretrained().eval()
nrm = lambda t: t.flatten(1).norm(dim=1)
clean = st.attenuation()
for blur in (0.3, 0.8):
    for n0 in (2e3, 1e4, 3e4, 1e5, 1e6):
        d = dataclasses.replace(det, n0=torch.full((N,), n0), scatter=torch.zeros(N), blur_sigma_px=torch.full((N,), blur),
                                electronic_sigma=torch.full((N,), 2.0))
        imgs = lf.compose(st, detector=d, seed=5)
        with torch.no_grad():
            D = model(imgs).denoised[:, 0]
        print(f"blur {blur} n0 {n0:8.0f}: input {100*(nrm(imgs[:,0]-clean)/nrm(clean)).mean():6.3f} %   v6 {100*(nrm(D-clean)/nrm(clean)).mean():6.3f} %")
