"""Where the JSW error of the five-percent arms sits: MAE by true JSW, test tilt and dose.

    python lab/2026-12-02-five-percent-anatomy/error_breakdown.py medium SEED OUT.json

Trains (a) real 100 %, (c1) LSN synth (mixed), (c3) + aug, (d) naive aug and the oracle arm on
one seed of the committed medium config (same data, seeds and trainers as the experiment) and
splits their test errors by the test set's hidden covariates.
"""
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from probe import config  # noqa: E402


def main(name, seed, out):
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks._common import mixed_source, naive_augment, tensor_source
    from lsn_fast.tasks.experiment import Synthesizer, _evaluate, _real_data, _synth_fn, _train_task, experiment_data

    cfg = config(name)
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    lsn = Synthesizer(bank, train["jsw"][low], cfg, images=train["base"][low])
    oracle = Synthesizer(train["stack"][low], train["jsw"][low], cfg)
    real_low = tensor_source(*_real_data("jsw", train, low))
    aug = naive_augment()
    arms = {
        "(a) real 100%": (_real_data("jsw", train, order), None),
        "(d) naive aug": (_real_data("jsw", train, low), aug),
        "(c1) LSN synth": (mixed_source(real_low, _synth_fn("jsw", lsn), cfg.synth_frac), None),
        "(c3) LSN synth + aug": (mixed_source(real_low, _synth_fn("jsw", lsn), cfg.synth_frac), aug),
        "oracle synth": (mixed_source(real_low, _synth_fn("jsw", oracle), cfg.synth_frac), None),
    }
    # the test set's hidden covariates: tilt from the true axis, the JSW
    tilt = lf.angle_from_axis(test["stack"].resolved_axis()).abs()
    jsw = test["jsw"]
    bins = {"jsw<0.5": jsw < 0.5, "0.5-1.5": (jsw >= 0.5) & (jsw < 1.5), "1.5-2.5": (jsw >= 1.5) & (jsw < 2.5),
            "jsw>=2.5": jsw >= 2.5, "|tilt|<=10": tilt <= 10, "|tilt|>10": tilt > 10}
    res = {}
    for arm, (data, a) in arms.items():
        m = _train_task("jsw", data, cfg, seed, augment=a)
        met, pred = _evaluate("jsw", m, test, cfg)
        err = pred - jsw
        res[arm] = {"mae": met["mae"], "bias": float(err.mean())}
        for b, sel in bins.items():
            res[arm][b] = float(err[sel].abs().mean())
            res[arm][b + " bias"] = float(err[sel].mean())
        print(arm, {k: round(v, 4) for k, v in res[arm].items()}, flush=True)
    res["n"] = {b: int(s.sum()) for b, s in bins.items()}
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
