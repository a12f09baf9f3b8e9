"""Scaling laws for continual pre-training: forms (built-in and user formulas), fitter, metrics, evaluation,
intervals, naive baselines, decisions, next-run design, selection.

Pure numpy/scipy (+ sympy for formulas): nothing here imports torch, mlflow or the rest of cptlaw except the stdlib-only
`cptlaw.errors` (whose `BadInput` every bad-input error derives from); the fit stage must stay fast.
"""

from cptlaw.laws.baselines import Skill, naive_predict, skill, skill_splits, split_skill
from cptlaw.laws.decide import compute_optimal, max_domain_share, optimal_share_limited_data, ppl_optimum
from cptlaw.laws.evaluate import BootstrapResult, Comparison, bootstrap, compare_forms, two_modes
from cptlaw.laws.fit import FitError, FitResult, fit
from cptlaw.laws.forms import REGISTRY, LawForm, LawInputError, get_law
from cptlaw.laws.formula import FormulaError, FormulaLaw, formula_law, law_from_spec
from cptlaw.laws.intervals import Calibration, Intervals, calibrate, noise_scale, prediction_intervals
from cptlaw.laws.metrics import all_metrics, huber_log, mape, r2, rmse
from cptlaw.laws.select import Selection, dos_select

__all__ = [
    "REGISTRY", "BootstrapResult", "Calibration", "Comparison", "FitError", "FitResult", "FormulaError",
    "FormulaLaw", "Intervals", "LawForm", "LawInputError", "Selection", "Skill", "all_metrics", "bootstrap",
    "calibrate", "compare_forms", "compute_optimal", "dos_select", "fit", "formula_law", "get_law", "huber_log",
    "law_from_spec", "mape", "max_domain_share", "naive_predict", "noise_scale", "optimal_share_limited_data",
    "ppl_optimum", "prediction_intervals", "r2", "rmse", "skill", "skill_splits", "split_skill", "two_modes",
]  # fmt: skip
