"""Could the collapse guard have seen seed 1's JSN collapse? Full-resolution data, arm (c1).

    python lab/2026-12-02-five-percent-fullres-centred/jsn_collapse_probe.py [SEED]

Re-trains (c1)'s JSN model exactly as the run did (seed 1, ``bone="both", moves="integer"``), then
reports what a guard could measure without the test set: the current criterion
(``output_spread`` on the mixed training source), and the prediction-label correlation on the
real 5 % pairs and on synthesized pairs separately; plus the test MAE and r.
"""
import sys
import time

import torch


def main(seed=1):
    torch.set_num_threads(2)
    from dataclasses import replace

    import lsn_fast as lf
    from lsn_fast.tasks._common import batched_apply, mixed_source, tensor_source
    from lsn_fast.tasks.experiment import FivePercentConfig, Synthesizer, _real_data, _train_task, experiment_data
    from lsn_fast.tasks.jsn import output_spread
    from lsn_fast.tasks.metrics import pearson_r as r
    from lsn_fast.tasks.metrics import regression_metrics

    cfg = replace(FivePercentConfig(synthesis="carry", fractions=(0.05, 1.0), steps=400, batch_size=24, realism_n=200, realism_steps=150),
                  bone="both", moves="integer")
    t0 = time.perf_counter()
    train, test, order, n_low = experiment_data(cfg, seed)
    low = order[:n_low]
    bank = lf.separate(train["base"][low], lf.LSN.pretrained(), spacing_mm=cfg.spacing_mm)
    syn = Synthesizer(bank, train["jsw"][low], cfg, images=train["base"][low], bone=cfg.bone, moves=cfg.moves)
    real = _real_data("jsn", train, low)
    mixed = mixed_source(tensor_source(*real), syn.pair_batch, cfg.synth_frac)
    m = _train_task("jsn", mixed, cfg, seed)
    print(f"trained in {time.perf_counter() - t0:.0f} s; restarts {m.restarts}", flush=True)

    def pred(a, b):
        m.eval()
        with torch.no_grad():
            return batched_apply(lambda x, y: m(x, y), a, b)

    p_real = pred(real[0], real[1])
    a, b, d = syn.pair_batch(256, torch.Generator().manual_seed(7))
    p_syn = pred(a, b)
    p_test = pred(test["base"], test["follow"])
    res = {"spread_mixed": output_spread(m, mixed, seed=seed), "r_real5": r(p_real, real[2]),
           "std_ratio_real5": float(p_real.std() / real[2].std()), "r_synth": r(p_syn, d),
           "std_ratio_synth": float(p_syn.std() / d.std()), **{f"test_{k}": v for k, v in
                                                              regression_metrics(p_test, test["jsn"]).items() if k in ("mae", "r")}}
    print({k: round(v, 4) for k, v in res.items()})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
