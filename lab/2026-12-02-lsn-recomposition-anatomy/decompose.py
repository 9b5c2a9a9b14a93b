import torch, torch.nn.functional as F, sys
torch.set_num_threads(2)
from lsn_fast.evaluate import _heldout
from lsn_fast import LSN, separate
ranges = sys.argv[1] if len(sys.argv) > 1 else "wide"
st, info, images = _heldout(32, 256, 10000, ranges)
m = LSN.pretrained().eval()
with torch.no_grad():
    pred = separate(images, m, st.spacing_mm, batch_size=8)
clean = st.attenuation(); rec = pred.attenuation()
r = rec - clean
nrm = lambda t: t.flatten(1).norm(dim=1)
tot = nrm(r) / nrm(clean)
print("mean rel", tot.mean().item())
# DC part
dc = r.mean((1, 2), keepdim=True)
print("DC-removed", (nrm(r - dc) / nrm(clean)).mean().item(), " DC only", (nrm(dc.expand_as(r)) / nrm(clean)).mean().item())
# low-pass
def gblur(x, s):
    k = int(3 * s) * 2 + 1; t = torch.arange(k) - k // 2; g = torch.exp(-t**2 / (2 * s * s)); g = g / g.sum()
    x = x.unsqueeze(1)
    x = F.conv2d(F.pad(x, (k//2, k//2, 0, 0), mode="replicate"), g.view(1, 1, 1, k))
    x = F.conv2d(F.pad(x, (0, 0, k//2, k//2), mode="replicate"), g.view(1, 1, k, 1))
    return x[:, 0]
for s in (2, 4, 8, 16):
    lo = gblur(r, s)
    print(f"lowpass s={s}: low {(nrm(lo)/nrm(clean)).mean():.4f} high {(nrm(r-lo)/nrm(clean)).mean():.4f}")
air = clean < 0.02
edge = gblur((clean > 0.02).float(), 1.5)
edge = (edge > 0.05) & (edge < 0.95)
bone = (st.upper + st.lower) > 0.01
for name, msk in (("air", air), ("skin-edge", edge), ("bone", bone), ("soft-only", ~air & ~bone & ~edge)):
    e = (r * msk).flatten(1).norm(dim=1) / nrm(clean)
    print(f"{name:10s} frac px {msk.float().mean():.3f}  err^2 share {(e**2).sum()/(tot**2).sum():.3f}")
# bone edges
be = gblur(bone.float(), 1.5); be = (be > 0.05) & (be < 0.95)
e = (r * be).flatten(1).norm(dim=1) / nrm(clean)
print(f"bone-edge frac px {be.float().mean():.3f} err^2 share {(e**2).sum()/(tot**2).sum():.3f}")
# scale error: best per-image scalar a*rec
a = (rec * clean).flatten(1).sum(1) / (rec * rec).flatten(1).sum(1)
print("best scale range", a.min().item(), a.max().item(), " err after", (nrm(a.view(-1,1,1)*rec - clean)/nrm(clean)).mean().item())

