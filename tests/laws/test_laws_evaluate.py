"""Bootstrap over runs and leave-one-group-out comparison of parameterisations."""

import numpy as np
import pytest

from cptlaw.laws import LawInputError, bootstrap, compare_forms, compute_optimal, fit, get_law
from cptlaw.laws.evaluate import rank_forms
from tests.helpers.synth import points, run_ids


def test_bootstrap_ci_contains_truth_and_derived_decision():
    x, y, truth = points("chinchilla", noise=0.005, seed=3)
    form = get_law("chinchilla")
    base = fit(form, x, y, n_starts=16)

    def n_opt(p):  # a derived decision: compute-optimal model size at C = 1e15
        return compute_optimal(form, p, 1e15, 1.0).n_params

    runs = np.arange(y.size)  # Chinchilla-style data: every point is its own run
    bs = bootstrap(form, x, y, runs, n_boot=40, base=base, derived={"n_opt": n_opt}, n_starts=4, n_refine=4,
                   n_polish=2)  # fmt: skip
    assert bs.n_failed == 0 and bs.samples["beta"].size == 40
    for k in ("alpha", "beta", "E"):
        lo, hi = bs.ci[k]
        assert lo <= truth[k] <= hi, (k, bs.ci[k], truth[k])
    lo, hi = bs.ci["n_opt"]
    assert lo <= n_opt(truth) <= hi and lo < hi
    assert set(bs.to_dict()["ci"]) >= {"alpha", "n_opt"}


def test_bootstrap_resamples_whole_runs():
    x, y, _ = points("dcpt")
    bs = bootstrap("dcpt", x, y, run_ids(x), n_boot=3, n_starts=4, n_refine=2, n_polish=1)
    assert bs.n_failed == 0 and bs.samples["alpha"].size == 3


def test_bootstrap_validates_groups():
    x, y, _ = points("chinchilla")
    with pytest.raises(LawInputError, match="`groups` must have one label per point"):
        bootstrap("chinchilla", x, y, np.arange(3), n_boot=2)


def test_compare_forms_prefers_the_true_form():
    # general loss with forgetting that grows with D: the extended form must predict held-out D better
    x, y, _ = points("dcpt_forgetting", seed=2)
    cmp_ = compare_forms(
        ["dcpt", "dcpt_forgetting"], x, y, ("D", "N"), max_groups=2, n_starts=8, n_refine=4, n_polish=2
    )
    assert cmp_.best["D"] == "dcpt_forgetting"
    assert cmp_.best_overall == "dcpt_forgetting"
    held = [r for r in cmp_.rows if r["split"] == "D"]
    assert len(held) == 4 and all(r["error"] is None for r in held)
    assert {s["form"] for s in cmp_.summary} == {"dcpt", "dcpt_forgetting"}


def test_compare_forms_records_unfittable_splits():
    x, y, _ = points("chinchilla")
    keep = x["N"] <= np.unique(x["N"])[1]  # two model sizes: holding one out leaves 7 points
    cmp_ = compare_forms(["chinchilla"], {k: v[keep] for k, v in x.items()}, y[keep], ("N",))
    assert all(r["error"] is None for r in cmp_.rows)
    x2 = {k: v[:8] for k, v in x.items()}
    cmp_ = compare_forms(["chinchilla"], x2 | {"g": np.array([0, 0, 0, 0, 0, 0, 0, 1])}, y[:8], ("g",))
    by_group = {r["held_out"]: r for r in cmp_.rows}
    assert "fewer than the 5 parameters" in by_group[0]["error"] and by_group[1]["error"] is None
    with pytest.raises(LawInputError, match="missing column `domain` to split by"):
        compare_forms(["chinchilla"], x, y, ("domain",))


def test_compare_forms_scores_a_naive_baseline_and_reports_skill():
    from cptlaw.fitting import naive_baseline

    x, y, _ = points("dcpt", seed=4)
    cmp_ = compare_forms(["dcpt", "chinchilla"], x, y, ("N", "r"), max_groups=3, baseline=naive_baseline,
                         n_starts=8, n_refine=4, n_polish=2)  # fmt: skip
    summary = {(s["form"], s["split"]): s for s in cmp_.summary}
    assert {("naive", "N"), ("naive", "r")} <= set(summary)
    # the true law beats interpolation between neighbouring ratios; a law blind to r loses to it
    assert summary[("dcpt", "r")]["skill"] < 1 < summary[("chinchilla", "r")]["skill"]
    assert cmp_.best["r"] == "dcpt" and "naive" not in cmp_.best.values()
    naive_rows = [r for r in cmp_.rows if r["form"] == "naive"]
    assert len(naive_rows) == 6 and all(r["error"] is None for r in naive_rows)


def test_a_split_no_form_predicts_does_not_vote():
    """By D form `a` wins; by r both forms are worse than the held-out mean, and their order there (b ahead
    by round-off) must not decide the choice. With no discriminating split, every split votes."""
    rows = [
        {"form": "a", "split": "D", "rmse": 0.01, "r2": 0.7},
        {"form": "b", "split": "D", "rmse": 0.02, "r2": 0.3},
        {"form": "a", "split": "r", "rmse": 9.0001, "r2": -50.0},
        {"form": "b", "split": "r", "rmse": 9.0, "r2": -49.9},
        {"form": "naive", "split": "r", "rmse": 0.001, "r2": 0.99},
    ]
    best, overall = rank_forms(rows, ["D", "r"])
    assert best == {"D": "a", "r": "b"} and overall == "a"
    assert rank_forms(rows[2:], ["D", "r"]) == ({"r": "b"}, "b")
