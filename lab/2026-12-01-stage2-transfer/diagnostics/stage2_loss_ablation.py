import functools, sys, json, torch
import lsn_fast.train as T
from lsn_fast.stage2_transfer import run_stage2_transfer
torch.set_num_threads(1)
variant = sys.argv[1]
W = {"no_recon": {"recon": 0.0, "counts": 0.0}, "no_recon_no_shift": {"recon": 0.0, "counts": 0.0, "shift": 0.0},
     "only_seg_outside": {"recon": 0.0, "counts": 0.0, "shift": 0.0, "adv": 0.0}}[variant]
orig = T.stage2_losses
T.stage2_losses = functools.partial(lambda *a, **k: orig(*a, **{**k, "weights": W}))
r = run_stage2_transfer(None, steps=150, eval_every=50, n_train=64, n_test=16, crop=256, batch=1, lr=2e-4,
                        out=f"/tmp/s2diag_{variant}", control=False, progress=False)
print(variant, [(p["step"], round(p["bone_psnr_db"], 2), round(p["soft_psnr_db"], 2), round(p["recomposition_rel"], 3), round(p["jsw_mae_mm"], 4)) for p in r["curves"]["stage2"]])
