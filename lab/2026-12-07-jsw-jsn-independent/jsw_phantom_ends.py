import torch, lsn_fast as lf, sys
for end in ("flat","round"):
    st, info = lf.phantom.generate(16, size=128, spacing_mm=0.1, seed=3, end=end)
    m = lf.measure_jsw(st)
    e = (m - info["jsw_mm"])
    print(end, "MAE %.4f max %.4f nan %d" % (e.abs().nanmean(), e.abs().nan_to_num(0).max(), int(torch.isnan(m).sum())))
