"""At v6, on training-like noisy inputs: does the per-layer loss pull D away from the clean image?
Gradients of the layer terms and of the reconstruction terms w.r.t. D, against D's error."""
import torch
import lsn_fast as lf
from lsn_fast import train as T
from lsn_fast.evaluate import _heldout

torch.set_num_threads(1)
st, info, images = _heldout(16, 256, 10_000, "train")
model = lf.LSN.pretrained().eval()
out = model(images)
D = out.denoised
D.retain_grad()
Tl = torch.stack([st.soft, st.upper, st.lower], 1)
clean = Tl.sum(1, keepdim=True)
frac = (out.layers / D.clamp_min(1e-12)).detach()  # the split p (layers = D·p)
P = D * frac  # gradient of the layer terms w.r.t. D only
lay = T.LOSS_SCALE * ((P - Tl).abs().mean() + T._grad_l1(P, Tl))
g_lay = torch.autograd.grad(lay, D, retain_graph=True)[0]
rec = T.LOSS_SCALE * ((D - clean).abs().mean() + 1.0 * 0)  # recon (L1 on D)
nrm = lambda t: t.flatten(1).norm(dim=1)
rr = T.LOSS_SCALE * (nrm(D - clean) / nrm(clean)).mean()
g_rec = torch.autograd.grad(rec + rr, D)[0]
e = (D - clean).detach()
cos = lambda a, b: float((a * b).sum() / (a.norm() * b.norm()))
print(f"D rel error {float((nrm(e) / nrm(clean)).mean()) * 100:.3f} %")
print(f"cos(-grad_layer, D error) = {cos(-g_lay, e):+.3f}   (> 0: the layer terms pull D further off)")
print(f"cos(-grad_recon, D error) = {cos(-g_rec, e):+.3f}   (< 0: the reconstruction terms pull D back)")
print(f"cos(grad_layer, grad_recon) = {cos(g_lay, g_rec):+.3f}; |grad_layer| / |grad_recon| = {float(g_lay.norm() / g_rec.norm()):.2f}")
