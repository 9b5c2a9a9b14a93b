"""``lsn-fast experiment five-percent`` ends on a verdict line (issue 35)."""

from lsn_fast.experiments.five_percent import FivePercentConfig, verdict


def _agg(c3_jsw, c3_acc):
    rows = []
    for task, key, vals in (("jsw", "mae", {"a": 0.02, "b": 0.10, "d": 0.05, "c": c3_jsw}),
                            ("jsn", "mae", {"a": 0.02, "b": 0.10, "d": 0.05, "c": c3_jsw}),
                            ("svdh", "accuracy", {"a": 0.97, "b": 0.80, "d": 0.90, "c": c3_acc})):
        for arm, name in (("a", "real 100%"), ("b", "real 5%"), ("d", "5% + naive aug"), ("c", "5% + LSN synth + aug (mixed)")):
            rows.append({"task": task, "arm": name, key: vals[arm]})
    return rows


def test_verdict_names_the_tasks_won_and_the_ratio_to_full_labels():
    cfg = FivePercentConfig()
    v = verdict(_agg(0.021, 0.975), cfg, {"lsn": [0.51]}, small_preset=False)
    assert v.startswith("verdict: ") and "clearly on 3/3 tasks" in v and "JSW MAE 1.05x" in v and "+0.005" in v
    assert "realism 0.51" in v and "small preset" not in v
    v = verdict(_agg(0.045, 0.91), cfg, {}, small_preset=True)
    assert "clearly on 0/3 tasks" in v and "small preset" in v
