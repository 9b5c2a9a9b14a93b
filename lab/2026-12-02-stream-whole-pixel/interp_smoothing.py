"""How much of a moved bone's fine texture survives the move: linear / cubic sub-pixel vs whole-pixel."""
import torch
import torch.nn.functional as F

import lsn_fast as lf
from lsn_fast.reference import translate

torch.manual_seed(0)
torch.set_num_threads(1)
st, info = lf.phantom.generate(32, size=128, spacing_mm=0.1, seed=3)
z, _ = lf.phantom.generate(32, size=128, spacing_mm=0.1, seed=3, texture=0.0)
B = 32
shift = (torch.rand(B) * 2 - 1) * 10  # px along the axis
disp = shift[:, None] * st.axis
tex = st.upper - z.upper  # the texture part of the upper bone


def hp(x):  # fine detail: x minus its Gaussian blur (σ = 1 px)
    k = torch.exp(-torch.arange(-3, 4, dtype=torch.float32) ** 2 / 2)
    k = k / k.sum()
    y = F.conv2d(x[:, None], k.view(1, 1, 1, 7), padding=(0, 3))
    y = F.conv2d(y, k.view(1, 1, 7, 1), padding=(3, 0))
    return x - y[:, 0]


inner = (slice(None), slice(8, -8), slice(8, -8))
ref = hp(tex)[inner].pow(2).sum()
ref_all = tex[inner].pow(2).sum()
rows = []
for name, d, interp in (("linear", disp, "linear"), ("cubic", disp, "cubic"), ("integer", torch.round(disp), "linear")):
    moved = translate(tex, d, interp)
    rows.append((name, float(moved[inner].pow(2).sum() / ref_all), float(hp(moved)[inner].pow(2).sum() / ref)))
print("move      texture power kept   fine-detail (σ=1 px high-pass) power kept")
for n, a, b in rows:
    print(f"{n:8s}  {a:.3f}               {b:.3f}")
noise = torch.randn(B, 128, 128)  # white noise, like the detector noise a carried layer holds
print("white noise power kept:", ", ".join(
    f"{n} {float(translate(noise, dd, ip)[inner].pow(2).sum() / noise[inner].pow(2).sum()):.3f}"
    for n, dd, ip in (("linear", disp, "linear"), ("cubic", disp, "cubic"), ("integer", torch.round(disp), "linear"))))
