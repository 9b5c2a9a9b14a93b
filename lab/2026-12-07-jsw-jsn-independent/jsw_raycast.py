import torch, lsn_fast as lf
from lsn_fast.physics import raycast as R
for end in ("sphere","flat") :
    try:
        out = R.render_joints(12, size=128, spacing_mm=0.1, seed=1, end=end)
    except Exception as ex:
        print(end, "err", ex); continue
    st, info = out[0], out[1]
    m = lf.measure_jsw(st)
    e = m - torch.as_tensor(info["jsw_mm"])
    print(end, "MAE %.4f max %.4f nan %d" % (e.abs().nanmean(), e.abs().nan_to_num(0).max(), int(torch.isnan(m).sum())))
