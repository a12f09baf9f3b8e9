"""Warm bootstrap, calibrated prediction intervals, naive baselines."""

import numpy as np
import pytest

from cptlaw.laws import LawInputError, bootstrap, calibrate, fit, get_law, naive_predict, prediction_intervals
from cptlaw.laws.baselines import skill, skill_splits
from cptlaw.laws.evaluate import resample_weights
from cptlaw.laws.fit import FitProblem, refit
from cptlaw.laws.intervals import (
    Calibration,
    extrapolated_column,
    extrapolation_cuts,
    fold_drift,
    noise_scale,
)
from tests.helpers.synth import points


def test_warm_refit_equals_a_full_fit_on_the_resample():
    x, y, _ = points("dcpt", noise=0.003, seed=2)
    form = get_law("dcpt")
    base = fit(form, x, y, n_starts=16)
    prob = FitProblem(form, form.features(x), y)
    for w in resample_weights(np.arange(y.size), 3, seed=1):
        warm = refit(prob.with_weights(w), base.params)
        idx = np.repeat(np.arange(y.size), w.astype(int))
        full = fit(form, {k: v[idx] for k, v in x.items()}, y[idx], n_starts=16)
        assert warm.success and warm.huber == pytest.approx(full.huber, rel=1e-7)
        for k in ("alpha", "beta", "eta", "E"):
            assert warm.params[k] == pytest.approx(full.params[k], rel=1e-4), k


def test_resample_weights_draw_whole_groups():
    g = np.array(["a", "a", "b", "b", "b", "c"])
    w = resample_weights(g, 50, seed=0)
    assert w.shape == (50, 6) and np.all(w.sum(axis=1) % 1 == 0)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 2] == w[:, 4])  # a group's points share a weight
    assert np.all(w[:, [0, 2, 5]].sum(axis=1) == 3)  # 3 groups drawn per resample


def test_resamples_follow_the_rows_not_the_group_labels():
    """The same runs under other ids (MLflow's are random, new on every re-run of a pipeline) draw the same
    resamples: a seeded interval is reproducible from the same fitting table."""
    g = np.array(["f3", "f3", "0a", "0a", "9c", "1b"])
    again = np.array(["00", "00", "ff", "ff", "aa", "55"])  # other labels, sorted in another order
    w = resample_weights(g, 50, seed=0)
    assert np.array_equal(w, resample_weights(again, 50, seed=0))
    assert not np.array_equal(w, resample_weights(g[::-1], 50, seed=0)[:, ::-1])  # row order does count


def test_bootstrap_methods_agree():
    x, y, _ = points("chinchilla", noise=0.005, seed=3)
    base = fit("chinchilla", x, y, n_starts=16)
    warm = bootstrap("chinchilla", x, y, np.arange(y.size), n_boot=12, base=base, seed=4)
    full = bootstrap("chinchilla", x, y, np.arange(y.size), n_boot=12, base=base, seed=4, method="full", n_starts=4,
                     n_refine=2, n_polish=1)  # fmt: skip
    for k in ("alpha", "beta"):
        np.testing.assert_allclose(warm.samples[k], full.samples[k], rtol=1e-3)
    assert warm.predict(x).shape == (12, y.size)
    with pytest.raises(LawInputError, match="`method`"):
        bootstrap("chinchilla", x, y, np.arange(y.size), n_boot=2, base=base, method="fast")


def _misspecified(seed):
    """Truth with a small term Chinchilla lacks, rising with N (of random size per seed): extrapolating in N
    drifts, by more the further out; the point noise (0.05%) is far below that drift."""
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(1e5, 1e7, 11), np.geomspace(1e6, 1e8, 4), indexing="ij")
    x = {"N": n.ravel(), "D": d.ravel()}
    extra = 0.02 * rng.uniform(0.5, 1.5) * (x["N"] / 1e5) ** 0.25
    y = (1.7 + 100 / x["N"] ** 0.34 + 60 / x["D"] ** 0.3 + extra) * np.exp(rng.normal(0, 5e-4, n.size))
    return x, y


def test_calibrated_intervals_cover_an_extrapolation_the_bootstrap_misses():
    covered, plain_covered, widths = [], [], []
    for seed in range(6):
        x, y = _misspecified(seed)
        tr, te = x["N"] < 3e6, x["N"] >= 3e6  # predict the three largest sizes (0.2-0.6 decades out)
        xtr, xte = {k: v[tr] for k, v in x.items()}, {k: v[te] for k, v in x.items()}
        res = fit("chinchilla", xtr, y[tr], n_starts=8)
        bs = bootstrap("chinchilla", xtr, y[tr], np.arange(tr.sum()), n_boot=30, base=res)
        noise = noise_scale(res, xtr, y[tr])
        horizon = float(np.log10(xte["N"].max() / xtr["N"].max()))
        cal = calibrate("chinchilla", xtr, y[tr], "N", horizon=horizon, n_starts=8)
        assert cal.along == "N" and len(cal.cuts) >= 3 and cal.fold_drifts.size == len(cal.cuts)
        plain = prediction_intervals(res, bs, xte, level=0.9, noise=noise)
        calib = prediction_intervals(res, bs, xte, level=0.9, noise=noise, calibration=cal)
        assert plain.method == "bootstrap" and calib.method == "calibrated"
        assert np.all(calib.lo < calib.pred) and np.all(calib.pred < calib.hi)
        wider = prediction_intervals(res, bs, xte, level=0.95, noise=noise, calibration=cal)
        assert np.all(wider.hi >= calib.hi) and np.all(wider.lo <= calib.lo)
        covered.append(calib.coverage(y[te]))
        plain_covered.append(plain.coverage(y[te]))
        widths.append(calib.mean_width())
    # measured (12 points per seed): calibrated 0.67 1.00 1.00 1.00 0.25 0.83 (mean 0.79), bootstrap + noise
    # 0.08 0.25 0.75 0.67 0.00 0.25 (mean 0.33)
    assert np.mean(covered) >= 0.75 and np.mean(plain_covered) <= 0.5
    assert max(widths) < 0.01  # not vacuous: within +-0.5% of the prediction


def test_fold_drift_and_conformal_rank():
    d = np.array([0.1, 0.2, 0.3, 0.4])
    assert fold_drift(0.05 * d, d, np.zeros(4)) == pytest.approx(0.05)  # a shared drift of 5% per decade
    spread = np.array([1.0, -1.0, 1.0, -1.0]) * 0.03 * d  # no shared drift, a spread growing with d
    assert fold_drift(spread, d, np.zeros(4)) == pytest.approx(0.03, rel=0.2)
    assert fold_drift(np.array([1e-3, -1e-3, 1e-3, -1e-3]), d, np.full(4, 1e-6)) == 0.0  # noise only
    # one fold per drift 0.01 .. 0.19: the ceil(20 * 0.9) = 18th smallest, capped at the largest
    ids = np.repeat(np.arange(19), 4)
    err = np.concatenate([k * 0.01 * d for k in range(1, 20)])
    cal = Calibration("N", [1.0] * 19, err, np.tile(d, 19), np.zeros(76), ids)
    assert cal.drift(0.9) == pytest.approx(0.18) and cal.drift(0.99) == pytest.approx(0.19)
    assert cal.kappa == pytest.approx(0.18) and cal.multiplier(0.9) == pytest.approx(1.6449, abs=1e-4)
    with pytest.raises(LawInputError, match="`level`"):
        cal.drift(1.5)
    assert extrapolation_cuts(np.repeat([1.0, 2.0, 3.0, 4.0], 5), (0.1, 0.2, 0.3), 5, min_levels=2) == [
        3.0,
        2.0,
    ]
    # a fold needs three levels of the extrapolated variable (offset, scale, exponent), whatever its rows
    assert extrapolation_cuts(np.repeat([1.0, 2.0, 3.0, 4.0], 5), (0.1, 0.2, 0.3), 5) == [3.0]
    assert extrapolated_column({"N": [1, 2], "D": [1, 5]}, {"N": [3, 4], "D": [2, 3]}, ("N", "D")) == "N"
    assert extrapolated_column({"N": [1, 2]}, {"N": [1.5]}, ("N",)) is None


def test_naive_interpolates_neighbours_and_carries_forward():
    xtr = {"r": np.array([0.2, 0.6, 0.2, 0.6]), "D": np.array([1.0, 1.0, 2.0, 2.0])}
    ytr = np.array([3.0, 2.0, 2.8, 1.8])
    xte = {"r": np.array([0.4, 0.4, 0.4]), "D": np.array([1.0, 2.0, 5.0])}
    np.testing.assert_allclose(naive_predict(xtr, ytr, xte, "r", ("D",))[:2], [2.5, 2.3])
    assert np.isnan(naive_predict(xtr, ytr, xte, "r", ("D",))[2])  # no run at D = 5
    later = {"r": np.array([0.2, 0.6]), "D": np.array([4.0, 8.0])}
    np.testing.assert_allclose(naive_predict(xtr, ytr, later, "D", ("r",)), [2.8, 1.8])  # last value carried
    sk = skill([2.5, 2.3], [2.4, 2.3], [2.4, 2.3])
    assert sk.naive_mape == 0 and sk.ratio == np.inf and sk.n_naive == 2


def test_skill_splits_rank_law_against_naive():
    x, y, _ = points("dcpt", noise=0.001, seed=3)
    out = skill_splits("dcpt", x, y, ("r", "D"), max_groups=3, n_starts=8, n_refine=4, n_polish=2)
    assert {s.split for s in out} == {"r", "D"} and all(s.error is None for s in out)
    # the true law predicts held-out ratios better than interpolating between neighbouring ratios
    r_rows = [s for s in out if s.split == "r"]
    assert np.mean([s.ratio for s in r_rows]) < 1 and all(s.n_naive == s.n_test for s in r_rows)
