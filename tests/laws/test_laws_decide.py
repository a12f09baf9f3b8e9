"""Decisions on synthetic laws with known answers: the three D-CPT usages, the perplexity optimum, DOS."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from cptlaw.laws import (
    LawInputError,
    compute_optimal,
    dos_select,
    get_law,
    max_domain_share,
    optimal_share_limited_data,
    ppl_optimum,
)  # fmt: skip
from cptlaw.laws.select import dos_select_naive
from tests.helpers.synth import TRUTH

DCPT = get_law("dcpt")
P = TRUTH["dcpt"] | DCPT.fixed
# a general-loss law (r = general share): rises as the general share falls
PG = dict(E=2.5, A=30.0, B=2.0, C=0.3, alpha=0.3, beta=0.2, eta=0.4, gamma=0.3) | DCPT.fixed


def _lg(r_general, n=3e5, d=2e5):
    return DCPT.predict(PG, {"N": np.atleast_1d(n), "D": np.atleast_1d(d), "r": np.atleast_1d(r_general)})[0]


def test_usage1_max_domain_share_is_the_tolerance_edge():
    lg0 = _lg(1.0) * 0.98  # base model's general loss, slightly below pure-general CPT
    dec = max_domain_share(DCPT, PG, 3e5, 2e5, lg0, tolerance=0.03)
    assert dec.status == "binding" and 0 < dec.r_domain < 1
    assert dec.rise == pytest.approx(0.03, abs=1e-9)
    assert (_lg(1 - (dec.r_domain - 1e-3)) - lg0) / lg0 < 0.03 < (_lg(1 - (dec.r_domain + 1e-3)) - lg0) / lg0
    assert max_domain_share(DCPT, PG, 3e5, 2e5, lg0, tolerance=10.0).status == "unconstrained"
    assert max_domain_share(DCPT, PG, 3e5, 2e5, lg0 * 0.5, tolerance=0.01).status == "infeasible"


def test_usage2_matches_brute_force():
    dec = optimal_share_limited_data(DCPT, P, 3e5, 5e4)
    r = np.linspace(1e-3, 1, 200001)
    ld = DCPT.predict(P, {"N": np.full_like(r, 3e5), "D": 5e4 / r, "r": r})
    assert dec.r_domain == pytest.approx(r[np.argmin(ld)], abs=2e-4)
    assert dec.total_tokens == pytest.approx(5e4 / dec.r_domain) and dec.domain_loss <= ld.min() + 1e-12
    with pytest.raises(LawInputError, match="`domain_tokens` must be > 0"):
        optimal_share_limited_data(DCPT, P, 3e5, 0)


def test_usage3_closed_form_matches_numeric_optimum():
    c, r = 1e15, 0.5
    alloc = compute_optimal(DCPT, P, c, r)
    assert 6 * alloc.n_params * alloc.n_tokens == pytest.approx(c)

    def loss(log_n):
        n = np.exp(log_n)
        return DCPT.predict(P, {"N": [n], "D": [c / (6 * n)], "r": [r]})[0]

    num = minimize_scalar(
        loss, bounds=(np.log(1e3), np.log(1e12)), method="bounded", options={"xatol": 1e-10}
    )
    assert alloc.n_params == pytest.approx(np.exp(num.x), rel=1e-3)
    assert alloc.loss == pytest.approx(num.fun, rel=1e-9)
    with pytest.raises(LawInputError, match="`r` must be in"):
        compute_optimal(DCPT, P, c, 0.0)


def test_ppl_optimum_interior_and_boundary():
    # interior maximum of (a0 + a1 s) ln m + (b0 + b1 m) ln s at (m, s) = (30, 10) (derived by hand:
    # a1 = -t/s*, b1 = -t/m*, a0 = t (1 + ln s*), b0 = t (1 + ln m*), ln m* ln s* > 4 makes it a maximum)
    t, m, s = 0.1, 30.0, 10.0
    p = dict(E=1.8, D_c=40.0, alpha0=t * (1 + np.log(s)), alpha1=-t / s, beta0=t * (1 + np.log(m)), beta1=-t / m,
             alpha_D=0.3)  # fmt: skip
    opt = ppl_optimum(get_law("ppl"), p, 1e5, (10.0, 60.0), (3.0, 25.0))
    assert opt.interior and opt.on_boundary == []
    assert opt.mu == pytest.approx(m, rel=1e-3) and opt.sigma == pytest.approx(s, rel=1e-3)
    # without interaction the law is monotone in mu and sigma: the optimum sits on the box corner
    q = TRUTH["ppl_nointeraction"]  # alpha0 < 0: loss falls as mu falls; beta0 > 0: loss falls as sigma grows
    opt = ppl_optimum(get_law("ppl_nointeraction"), q, 1e5, (10.0, 60.0), (3.0, 25.0))
    assert not opt.interior and set(opt.on_boundary) == {"mu_min", "sigma_max"}


def test_dos_hits_target_moments_and_matches_naive():
    rng = np.random.default_rng(0)
    x, tok = rng.lognormal(3.0, 0.6, 200_000), rng.integers(50, 500, 200_000)
    sel = dos_select(x, tok, 0.05 * tok.sum(), 25.0, 8.0)
    assert sel.budget_met and sel.n_tokens >= 0.05 * tok.sum()
    assert sel.mu == pytest.approx(25.0, rel=1e-3) and sel.sigma == pytest.approx(8.0, rel=1e-3)
    assert len(set(sel.indices.tolist())) == sel.indices.size
    assert x[sel.indices].mean() == pytest.approx(sel.mu) and x[sel.indices].std() == pytest.approx(sel.sigma)
    small = x[:3000], tok[:3000]
    a, b = dos_select(*small, 5e4, 25.0, 8.0), dos_select_naive(*small, 5e4, 25.0, 8.0)
    assert np.array_equal(a.indices, b.indices) and a.objective == pytest.approx(b.objective)


def test_dos_unreachable_target_and_bad_inputs():
    x, tok = np.array([1.0, 2.0, 3.0]), np.ones(3)
    sel = dos_select(x, tok, 100.0, 50.0, 1.0)  # budget larger than the pool: takes everything, says so
    assert not sel.budget_met and sel.indices.size == 3
    with pytest.raises(LawInputError, match="`tokens` must have the shape"):
        dos_select(x, np.ones(2), 1.0, 2.0, 1.0)
    with pytest.raises(LawInputError, match="`budget` must be > 0"):
        dos_select(x, tok, 0.0, 2.0, 1.0)
