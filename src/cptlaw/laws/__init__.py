"""Scaling laws for continual pre-training: forms, fitter, metrics, evaluation, decisions, selection.

Pure numpy/scipy: nothing here imports torch, mlflow or the rest of cptlaw except the stdlib-only
`cptlaw.errors` (whose `BadInput` every bad-input error derives from); the fit stage must stay fast.
"""

from cptlaw.laws.decide import compute_optimal, max_domain_share, optimal_share_limited_data, ppl_optimum
from cptlaw.laws.evaluate import BootstrapResult, Comparison, bootstrap, compare_forms
from cptlaw.laws.fit import FitError, FitResult, fit
from cptlaw.laws.forms import REGISTRY, LawForm, LawInputError, get_law
from cptlaw.laws.metrics import all_metrics, huber_log, mape, r2, rmse
from cptlaw.laws.select import Selection, dos_select

__all__ = [
    "REGISTRY", "BootstrapResult", "Comparison", "FitError", "FitResult", "LawForm", "LawInputError",
    "Selection", "all_metrics", "bootstrap", "compare_forms", "compute_optimal", "dos_select", "fit", "get_law",
    "huber_log", "mape", "max_domain_share", "optimal_share_limited_data", "ppl_optimum", "r2", "rmse",
]  # fmt: skip
