"""Scaling laws for continual pre-training: forms, fitter, metrics, evaluation, decisions, selection.

Pure numpy/scipy: nothing here imports torch, mlflow or the rest of cptlaw (the fit stage must stay fast).
"""

from cptlaw.laws.fit import FitError, FitResult, fit
from cptlaw.laws.forms import REGISTRY, LawForm, LawInputError, get_law

__all__ = ["REGISTRY", "FitError", "FitResult", "LawForm", "LawInputError", "fit", "get_law"]
