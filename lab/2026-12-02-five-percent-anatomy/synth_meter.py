"""Do synthesized families look like the JSW they are labelled with? A meter trained on real data.

    python lab/2026-12-02-five-percent-anatomy/synth_meter.py SEED OUT.json

Each bank is moved two ways: the upper bone only (``bone="upper"``, what the experiment did
until 2026-12-02) and both bones by half (``bone="both"``: the gap stays centred in the crop,
as in the real, joint-centred crops).

The (a) arm's JSW regressor (100 % of the real labels, medium config, bias +0.003 mm on the
test set) is used as a meter: it reads the JSW of LSN (carry) and oracle families made from the
100 low-label joints at known targets. If the families look wider than their labels, (c) learns
to read real joints too narrow (the (c) arms' test bias is -0.013 mm over 6 seeds). The reading
error is split by the move (target - source JSW) and by the target.
"""
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def main(seed, out):
    torch.set_num_threads(1)
    import lsn_fast as lf
    from lsn_fast.tasks.experiment import Synthesizer, _real_data, _train_task, experiment_data
    from lsn_fast.tasks.jsw_regression import predict_jsw
    from probe import config

    cfg = config("medium")
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    meter = _train_task("jsw", _real_data("jsw", train, order), cfg, seed)
    test_err = predict_jsw(meter, test["base"]) - test["jsw"]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    lab = train["jsw"][low]
    res = {"meter_test_bias": float(test_err.mean()), "meter_test_mae": float(test_err.abs().mean())}
    # the source images themselves (no move): the meter's own error on these joints
    src_err = predict_jsw(meter, train["base"][low]) - lab
    res["source_bias"] = float(src_err.mean())
    g = torch.Generator().manual_seed(123)
    idx = torch.arange(n_low).repeat(8)
    target = torch.rand(idx.numel(), generator=g) * 3.0
    move = target - lab[idx]
    variants = []
    for bone in ("upper", "both"):
        variants += [(f"lsn carry, bone={bone}", Synthesizer(bank, lab, cfg, images=train["base"][low], bone=bone)),
                     (f"lsn render, bone={bone}", Synthesizer(bank, lab, cfg, bone=bone)),
                     (f"oracle, bone={bone}", Synthesizer(train["stack"][low], lab, cfg, bone=bone))]
    for name, syn in variants:
        x = torch.cat([syn._render(idx[s:s + 100], target[s:s + 100], g) for s in range(0, idx.numel(), 100)])
        err = predict_jsw(meter, x) - target
        r = {"bias": float(err.mean()), "mae": float(err.abs().mean())}
        for lo, hi in ((-3, -1), (-1, -0.2), (-0.2, 0.2), (0.2, 1), (1, 3)):
            sel = (move >= lo) & (move < hi)
            r[f"move {lo}..{hi} bias"] = float(err[sel].mean())
        for lo, hi in ((0, 0.5), (0.5, 1.5), (1.5, 2.5), (2.5, 3.0)):
            sel = (target >= lo) & (target < hi)
            r[f"target {lo}..{hi} bias"] = float(err[sel].mean())
        res[name] = r
        print(name, {k: round(v, 4) for k, v in r.items()}, flush=True)
    print({k: round(v, 4) for k, v in res.items() if not isinstance(v, dict)})
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
