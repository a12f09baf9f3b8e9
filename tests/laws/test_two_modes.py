"""`two_modes`: a decision's bootstrap answers in two separate groups are flagged, one hump never is."""

import numpy as np
import pandas as pd
import pytest

from cptlaw.laws import get_law, two_modes

UNIMODAL = {
    "normal": lambda g: g.normal(0.6, 0.05, 200),
    "uniform": lambda g: g.uniform(0.5, 0.8, 200),
    "exponential": lambda g: g.exponential(1.0, 200),
    "lognormal": lambda g: g.lognormal(0.0, 1.5, 200),
    "student t (2 dof)": lambda g: g.standard_t(2, 200),
    "clipped at a bound": lambda g: np.clip(g.normal(0.95, 0.05, 200), 0.0, 1.0),
}


@pytest.mark.parametrize("name", list(UNIMODAL))
def test_one_hump_is_not_split(name):
    flagged = [two_modes(UNIMODAL[name](np.random.default_rng(seed))) for seed in range(40)]
    assert sum(m is not None for m in flagged) <= 1, name


def test_few_resamples_of_a_flat_spread_are_rarely_split():
    # with 30 answers a uniform's best split often explains > 80% of the variance; no empty stretch divides it
    flagged = [two_modes(np.random.default_rng(seed).uniform(0.4, 0.9, 30)) for seed in range(200)]
    assert sum(m is not None for m in flagged) <= 20  # 13 here; 44 without the empty-stretch rule


def test_two_separate_groups_are_found_with_their_shares_and_gap():
    g = np.random.default_rng(0)
    x = np.r_[g.normal(0.14, 0.01, 150), g.normal(0.38, 0.02, 50)]
    m = two_modes(g.permutation(x))
    assert m is not None and m["shares"] == [0.75, 0.25]
    assert m["medians"][0] == pytest.approx(0.14, abs=0.01) and m["medians"][1] == pytest.approx(
        0.38, abs=0.01
    )
    assert m["gap"] == [float(np.sort(x)[149]), float(np.sort(x)[150])] and m["separation"] > 0.95


def test_a_group_at_the_search_bound_counts_and_ties_stay_together():
    # usage 1's r_d = 1 (the trade-off does not bind) in 12% of resamples, as the demo's code domain
    g = np.random.default_rng(1)
    x = np.r_[np.full(60, 0.609), g.uniform(0.609, 0.75, 116), np.ones(24)]
    m = two_modes(x)
    assert m is not None and m["medians"][1] == 1.0 and m["shares"] == [0.88, 0.12]
    assert m["gap"][1] == 1.0 and m["gap"][0] < 0.75


def test_too_small_a_group_too_few_answers_or_one_value_is_not_a_split():
    g = np.random.default_rng(2)
    assert two_modes(np.r_[g.normal(0.0, 1.0, 196), [20.0, 21.0, 22.0, 23.0]]) is None  # 2% < min_share
    assert two_modes(np.r_[np.zeros(8), np.ones(8)]) is None  # 16 answers: too few to tell
    assert two_modes(np.full(200, 0.5)) is None
    assert two_modes(np.r_[np.full(100, 0.2), np.full(100, 0.9), [np.nan] * 5])["shares"] == [0.5, 0.5]


def test_a_bootstrapped_decision_that_jumps_between_two_answers_is_flagged():
    from types import SimpleNamespace

    from cptlaw.decide.usages import _boot, _flag_split
    from tests.helpers.synth import points, run_ids

    x, y, truth = points("dcpt", noise=0.01, seed=4)
    rows = pd.DataFrame({"N": x["N"], "D": x["D"], "r": x["r"], "domain_loss": y, "run_id": run_ids(x)})
    law = SimpleNamespace(form=get_law("dcpt"), params=truth)
    c = SimpleNamespace(
        bootstrap=200, ci_level=0.9, bootstrap_starts=4, bootstrap_maxiter=50, get=lambda k, d: d
    )
    beta = truth["beta"]

    def jumps(p):  # a decision on a knife edge: which side of the truth the refitted exponent lands
        return 0.9 if p["beta"] > beta else 0.2

    boot = _boot(law, rows, "domain", {"r_domain": jumps, "limited_r_domain": lambda p: p["beta"]}, c, seed=0)
    assert set(boot["modes"]) == {"r_domain"}
    out = _flag_split({}, boot, "r_domain")
    assert out["split"]["medians"] == [0.2, 0.9] and min(out["split"]["shares"]) > 0.05
    assert out["fragile"].startswith("the resampled answers fall into two groups (r_d ≈ 0.2 in ")
    assert _flag_split({}, boot, "limited_r_domain") == {}


def test_sizes_that_span_decades_are_split_in_log_units():
    # compute-optimal N* at ~1e3 in 70% of resamples, ~3e4 in 30%: plain in log units, but in linear units the
    # upper group's own spread rivals the gap, and the split is missed in about a fifth of such draws
    def draw(seed):
        g = np.random.default_rng(seed)
        return np.r_[np.exp(g.normal(np.log(1e3), 0.3, 140)), np.exp(g.normal(np.log(3e4), 0.3, 60))]

    linear = [two_modes(draw(seed)) for seed in range(100)]
    logged = [two_modes(draw(seed), log=True) for seed in range(100)]
    assert sum(m is None for m in linear) >= 10 and all(m is not None for m in logged)
    m = logged[0]
    assert m["shares"] == [0.7, 0.3] and m["medians"][0] == pytest.approx(1e3, rel=0.15)
    assert m["medians"][1] == pytest.approx(3e4, rel=0.15) and 1e3 < m["gap"][0] < m["gap"][1] < 3e4
    one_hump = [
        two_modes(np.random.default_rng(s).lognormal(np.log(2e5), 1.0, 200), log=True) for s in range(40)
    ]
    assert sum(m is not None for m in one_hump) <= 1
