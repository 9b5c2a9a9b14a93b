"""The part of the recomposition error no separator can remove: the trabecular texture under noise and blur.

    OMP_NUM_THREADS=1 python lab/2026-12-02-lsn-recomposition-floor/texture_floor.py OUT.json [K]

The phantom's bone texture is band-pass filtered Gaussian noise (``phantom._texture_fields``), a
random field that no prior can predict; only the image can reveal it, and only where its power
after the detector blur stands above the noise. For each held-out `wide` image (32 × 256², seed
10000, the `lsn-fast eval-lsn` set) this script builds an estimator that is told **everything
except the texture**: the textureless phantom A0 (same seed, texture field set to zero: every
shape, density, the JSW), the detector's blur, its scatter (removed exactly), and the texture's
expected power spectrum (Monte Carlo over K other texture draws of the same phantom). It then
estimates the texture from the image by Wiener filtering in the transmission domain, where the
blur is linear:

    r = H·exp(−A0) − t_obs ≈ H·(exp(−A0)·A_tex) + noise,   Â_tex = Wiener(r) / exp(−A0)

and reports ‖A0 + Â_tex − A‖/‖A‖, with Â_tex set to 0 outside the texture's support (the
trabecular bone, known to this oracle: ``floor``) and without that (``floor_stationary``). For a Gaussian texture with a known, stationary spectrum the
Wiener filter is the minimum-mean-square-error estimator, so this is an estimate of the floor
of the recomposition error on this set. It is an estimate, not a bound: the texture is not
stationary (it lives in the trabecular bone only, with a chord-length weight that a smarter
estimator could model) and the transmission is linearized around A0. The
LSN's per-image errors come from the committed v6 eval (same images).
"""
import json
import sys

import torch

import lsn_fast.phantom as ph
from lsn_fast.compose import compose
from lsn_fast.detector import PARAM_COLUMNS
from lsn_fast.evaluate import _heldout

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from oracle_wiener import V6, ring_mean, transfer  # noqa: E402

N, SIZE, SEED = 32, 256, 10_000


def phantoms_with_texture(make):
    """The `wide` phantoms with the texture field replaced by ``make(noise, P, cell)``."""
    orig = ph._texture_fields
    ph._texture_fields = lambda noise, P, cell: make(orig, noise, P, cell)
    try:
        st, _ = ph.generate(N, size=SIZE, seed=SEED, tilt_deg=(-15.0, 15.0))
    finally:
        ph._texture_fields = orig
    return st.attenuation().double()


def main(out, K=16):
    torch.set_num_threads(1)
    st, info, images = _heldout(N, SIZE, SEED, "wide")
    det = info["detector"]
    params = det.params(N)
    A = st.attenuation().double()
    # the same phantoms without texture (bit-identical to a zero texture field, checked)
    A0 = ph.generate(N, size=SIZE, seed=SEED, tilt_deg=(-15.0, 15.0), texture=0.0)[0].attenuation().double()
    t0 = torch.exp(-A0)
    # expected texture spectrum of u = t0·A_tex: K independent texture draws of the same phantoms
    Su = torch.zeros(N, SIZE, SIZE // 2 + 1, dtype=torch.float64)
    support = torch.zeros(N, SIZE, SIZE, dtype=torch.bool)  # where the texture can be non-zero (trabecular bone)
    for k in range(K):
        g = torch.Generator().manual_seed(1000 + k)
        Ak = phantoms_with_texture(lambda orig, noise, P, cell: orig(torch.randn(noise.shape, generator=g), P, cell))
        Su += torch.fft.rfft2(t0 * (Ak - A0)).abs() ** 2 / K
        support |= (Ak - A0).abs() > 1e-7
        print(f"texture draw {k + 1}/{K}", flush=True)
    quiet = det.replace(noise="none", electronic_sigma=0.0)
    with_scatter = compose(st, detector=quiet)[:, 0].double()
    blurred = compose(st, detector=quiet.replace(scatter=0.0))[:, 0].double()
    t_obs = torch.exp(-images[:, 0].double()) - (torch.exp(-with_scatter) - torch.exp(-blurred))
    fy = torch.fft.fftfreq(SIZE, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(SIZE, dtype=torch.float64)[None, :]
    rad = torch.sqrt(fy ** 2 + fx ** 2)
    v6 = json.load(open(V6))["per_sample"]["recomposition_rel"]
    from lsn_fast.lsn import LSN, separate

    rec = separate(images, LSN.pretrained(), st.spacing_mm, batch_size=8).attenuation().double()
    bone = (st.upper + st.lower) > 1e-6
    rows = []
    for i in range(N):
        Hf = transfer(float(params[i, PARAM_COLUMNS.index("blur_sigma_px")]), SIZE, SIZE)
        T = torch.fft.rfft2(torch.exp(-A[i]))
        noise_spec = ring_mean((torch.fft.rfft2(t_obs[i]) - Hf * T).abs() ** 2, rad)  # realized noise, ring-averaged
        R = torch.fft.rfft2(blurred_t0 := torch.fft.irfft2(Hf * torch.fft.rfft2(t0[i]), s=(SIZE, SIZE))) - torch.fft.rfft2(t_obs[i])
        G = Hf * Su[i] / (Hf ** 2 * Su[i] + noise_spec).clamp_min(1e-30)
        A_tex_hat = torch.fft.irfft2(G * R, s=(SIZE, SIZE)) / t0[i]
        masked = torch.where(support[i], A_tex_hat, torch.zeros_like(A_tex_hat))
        nrm = A[i].norm()
        row = {"i": i, **{k: float(params[i, j]) for j, k in enumerate(PARAM_COLUMNS)}, "lsn_v6": v6[i],
               "texture_energy": float((A[i] - A0[i]).norm() / nrm),
               "floor_stationary": float((A0[i] + A_tex_hat - A[i]).norm() / nrm),
               "floor": float((A0[i] + masked - A[i]).norm() / nrm),
               "lsn_rerun": float((rec[i] - A[i]).norm() / nrm)}
        # where the LSN's squared error lies: trabecular texture support, other bone (cortex, plate,
        # texture-free), soft tissue only; and how much of it is above the oracle's in each region
        e2, f2 = (rec[i] - A[i]) ** 2, (A0[i] + masked - A[i]) ** 2
        regions = {"trabecular": support[i], "other_bone": bone[i] & ~support[i], "soft": ~bone[i]}
        for name, m in regions.items():
            row[f"lsn_sq_share_{name}"] = float(e2[m].sum() / e2.sum())
            row[f"floor_sq_share_{name}"] = float(f2[m].sum() / e2.sum())
        del blurred_t0
        rows.append(row)
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    mean = {k: sum(r[k] for r in rows) / N for k in ("lsn_v6", "texture_energy", "floor_stationary", "floor")}
    share = {k: sum(r[k] <= 0.01 for r in rows) / N for k in ("lsn_v6", "floor")}
    below = [r["i"] for r in rows if r["lsn_v6"] < r["floor"]]
    for name in ("trabecular", "other_bone", "soft"):
        for who in ("lsn", "floor"):
            mean[f"{who}_sq_share_{name}"] = sum(r[f"{who}_sq_share_{name}"] for r in rows) / N
    print("share of the LSN's squared error by region (LSN / oracle estimate, both as shares of the LSN's):",
          {n: (round(mean[f"lsn_sq_share_{n}"], 3), round(mean[f"floor_sq_share_{n}"], 3))
           for n in ("trabecular", "other_bone", "soft")})
    print("mean relative error %:", {k: round(100 * v, 3) for k, v in mean.items()})
    print("share of images at <= 1 %:", share, "| images where the LSN is below the estimate:", below)
    json.dump({"K": K, "rows": rows, "mean": mean, "share_le_1pct": share, "lsn_below": below}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 16)
