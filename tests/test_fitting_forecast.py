"""The fit stage's forecast intervals: a run continued to 2x its D, calibrated on extrapolation folds in D."""

import json
from dataclasses import replace

import numpy as np

from cptlaw.fitting import Target, fit_target, untimed
from cptlaw.laws import get_law

TRUTH = {"E": 1.5, "A": 30.0, "B": 200.0, "C": 0.05, "alpha": 0.3, "beta": 0.35, "eta": 0.4, "gamma": 0.3}
CONFIG = {"n_starts": 16, "n_refine": 4, "n_polish": 2, "sampler": "lhs", "huber_delta": 1e-3, "polish_maxiter": 300,
          "min_d_tokens": 0, "epsilon": 1e-3, "laws": {"domain": ["dcpt"]}, "min_runs": 3, "holdouts": {"domain": ["r"]},
          "holdout_mode": "logo", "max_holdout_groups": 3, "bootstrap": 100, "ci_level": 0.9,
          "intervals": {"domain": {"along": "D", "factor": 2.0}}}  # fmt: skip


def _target(seed: int) -> Target:
    """Runs (N x r) evaluated at D up to 1.1e5 (the fitted part of a geometric grid to 2.4e6)."""
    form = get_law("dcpt")
    n, r, d = np.meshgrid(
        [1e5, 3e5, 8e5], [0.1, 0.33, 0.67, 1.0], np.geomspace(2e4, 2.4e6, 14), indexing="ij"
    )
    X = {"N": n.ravel(), "D": d.ravel(), "r": r.ravel()}
    y = form.predict(TRUTH | form.fixed, X) * np.exp(
        np.random.default_rng(seed).normal(0, 0.003, X["D"].size)
    )
    runs = np.array([f"{a:g}|{b:g}" for a, b in zip(X["N"], X["r"], strict=True)])
    fitted = X["D"] <= np.unique(X["D"])[6]
    t = Target("domain_x", "domain", "x", {k: v[fitted] for k, v in X.items()}, y[fitted], runs[fitted])
    return t


def test_forecast_intervals_bracket_the_longer_runs():
    out, _ = fit_target(_target(seed=1), CONFIG, seed=0)
    iv = out["intervals"]
    assert (
        iv["method"] == "calibrated" and iv["factor"] == 2.0 and len(iv["points"]["D"]) == 12
    )  # one per run
    lo, hi, pred = (np.array(iv["points"][k]) for k in ("lo", "hi", "prediction"))
    assert np.all(lo < pred) and np.all(pred < hi)
    # the real losses of the runs at 2x their largest fitted D (interpolated on the true curve) fall inside
    form = get_law("dcpt")
    at = {k: np.array(iv["points"][k]) for k in ("N", "D", "r")}
    real = form.predict(TRUTH | form.fixed, at)
    assert np.mean((lo <= real) & (real <= hi)) >= 0.9
    assert "skill" in next(s for s in out["comparison"]["summary"] if s["form"] == "dcpt")


def test_a_formula_in_fit_laws_is_fitted_and_rebuilt_by_the_decisions():
    from cptlaw.decide.inputs import target_law

    formula = "E + A/N**alpha + B*(r + 0.001)**(-gamma)/D**beta"
    config = CONFIG | {"laws": {"domain": [formula, "dcpt"]}, "bootstrap": 0}
    out, main = fit_target(_target(seed=2), config, seed=0)
    name = next(iter(out["fits"]))
    assert out["fits"][name]["spec"] == formula and out["fits"]["dcpt"]["spec"] == "dcpt"
    law = target_law({"targets": {"domain_x": out}}, "domain_x", "primary")
    X = _target(seed=2).X
    assert np.allclose(law.form.predict(law.params, X), main.predict(X), rtol=1e-10)


def test_provenance_names_no_machine_folder(tmp_path, monkeypatch):
    from cptlaw.provenance import relative_paths

    root = str(tmp_path)
    cfg = {"paths": {"root": root, "data": f"{root}/data"}, "other": "/elsewhere/x", "list": [f"{root}/a"],
           "uri": f"sqlite:///{root}/mlruns/mlflow.db"}  # fmt: skip
    assert relative_paths(cfg, root) == {"paths": {"root": ".", "data": "data"}, "other": "/elsewhere/x",
                                         "list": ["a"], "uri": "sqlite:///mlruns/mlflow.db"}  # fmt: skip


def test_targets_fitted_in_two_processes_are_the_fits_of_one(caplog):
    """`fit.n_jobs`: worker processes give the same results, bit for bit (formula laws included), in target
    order, and the log lines of every fit still reach the stage's log."""
    import logging

    from cptlaw.fitting import fit_targets

    config = CONFIG | {"laws": {"domain": ["E + A/N**alpha + B*(r + 0.001)**(-gamma)/D**beta", "dcpt"]},
                       "bootstrap": 10, "max_holdout_groups": 2}  # fmt: skip
    targets = [replace(_target(seed=s), name=f"domain_{s}") for s in (3, 4, 5)]
    one = list(fit_targets(targets, config, 0, n_jobs=1))
    with caplog.at_level(logging.INFO, logger="cptlaw.fit"):
        two = list(fit_targets(targets, config, 0, n_jobs=2))
    assert [t.name for t, *_ in two] == ["domain_3", "domain_4", "domain_5"]
    for (_, a, main_a), (_, b, main_b) in zip(one, two, strict=True):
        assert json.dumps(untimed(a), sort_keys=True) == json.dumps(untimed(b), sort_keys=True)
        assert np.array_equal(main_a.predict(targets[0].X), main_b.predict(targets[0].X))
    assert sum("[fit] domain_4 dcpt: huber" in r.getMessage() for r in caplog.records) == 1


def test_run_labels_do_not_change_the_result():
    """MLflow run ids are random: relabelling the runs (another sort order) gives the same result, forecast
    points in the same order (the table's), bit for bit."""
    t = _target(seed=1)
    labels = {r: f"{i:02d}" for i, r in enumerate(reversed(dict.fromkeys(t.runs)))}  # reverses the sort order
    relabelled = replace(t, runs=np.array([labels[r] for r in t.runs]))
    config = CONFIG | {"bootstrap": 5, "holdouts": {"domain": []}}  # the forecast points and resamples
    a, _ = fit_target(t, config, seed=0)
    b, _ = fit_target(relabelled, config, seed=0)
    assert a["intervals"]["points"]["N"][0] == t.X["N"][0]
    assert json.dumps(untimed(a), sort_keys=True) == json.dumps(untimed(b), sort_keys=True)
