"""Downstream tasks on finger-joint radiographs (issue 6), each usable on its own:

* :mod:`.jsw_regression` — JSW measurement: :class:`JSWRegressor`, :func:`train_jsw_regressor`;
* :mod:`.jsn` — joint space narrowing between two visits: :func:`quantify_jsn` (classical
  phase-only correlation ``method="poc"`` or a learned :class:`SiameseJSN`);
* :mod:`.svdh` — SvdH-like JSN grade 0–4: :func:`svdh_grade`, :class:`SvdHClassifier`;
* :mod:`.metrics` — MAE, RMSE, Pearson r, ICC(2,1)/(3,1), accuracy, quadratic-weighted kappa,
  confusion matrix (plain torch);
* :mod:`.experiment` — the "5 % of the labels" experiment (:func:`run_five_percent`, CLI
  ``lsn-fast experiment five-percent [--quick]``).

See docs/tasks.md.
"""

from lsn_fast.tasks.jsn import SiameseJSN, evaluate_jsn, joint_line, poc_displacement, quantify_jsn, train_jsn_model
from lsn_fast.tasks.jsw_regression import JSWRegressor, evaluate_jsw, predict_jsw, train_jsw_regressor
from lsn_fast.tasks.metrics import (accuracy, bias, classification_metrics, confusion_matrix, icc, mae, pearson_r,
                      quadratic_weighted_kappa, regression_metrics, rmse)
from lsn_fast.tasks.svdh import (REFERENCE_JSW_MM, SVDH_THRESHOLDS, SvdHClassifier, evaluate_svdh, predict_svdh, svdh_grade,
                   train_svdh_classifier)


def run_five_percent(*args, **kwargs):
    """See :func:`lsn_fast.tasks.experiment.run_five_percent`."""
    from lsn_fast.experiments.five_percent import run_five_percent as _run

    return _run(*args, **kwargs)


__all__ = [
    "quantify_jsn", "poc_displacement", "joint_line", "SiameseJSN", "train_jsn_model", "evaluate_jsn",
    "JSWRegressor", "train_jsw_regressor", "predict_jsw", "evaluate_jsw",
    "svdh_grade", "SVDH_THRESHOLDS", "REFERENCE_JSW_MM", "SvdHClassifier", "train_svdh_classifier", "predict_svdh",
    "evaluate_svdh", "mae", "rmse", "bias", "pearson_r", "icc", "regression_metrics", "accuracy", "confusion_matrix",
    "quadratic_weighted_kappa", "classification_metrics", "run_five_percent",
]
