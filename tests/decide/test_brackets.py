"""Decisions answer to the runs: the run bracket of usages 1 and 2, and a law answer outside it is replaced."""

import numpy as np
import pandas as pd

from cptlaw.decide.brackets import usage1_bracket, usage2_bracket, verdict
from cptlaw.decide.usages import _answer_to_runs


def _runs(shares, general, domain, n=1e5, ds=(1e4, 3e4, 1e5)) -> pd.DataFrame:
    """One run per share r; general_loss(r) / domain_loss(r, D) given as functions."""
    rows = [{"run_id": f"r{r}", "N": n, "r": r, "D": d, "general_loss": general(r, d), "domain_loss": domain(r, d)}
            for r in shares for d in ds]  # fmt: skip
    return pd.DataFrame(rows)


def test_usage1_bracket_and_a_contradicted_law_answer():
    lg0 = 3.0
    rows = _runs(
        [0.0, 0.2, 0.5, 0.8, 1.0], lambda r, d: lg0 * (1 + 0.06 * r), lambda r, d: 4.0
    )  # rise 6% at r=1
    runs = usage1_bracket(rows, 1e5, 1e5, lg0, 0.03)
    assert runs["bracketed"] and runs["bracket"] == [0.5, 0.8]  # 3% is crossed between r = 0.5 and 0.8
    assert verdict(0.6, runs)["agrees"] is True
    assert verdict(0.8, runs)["agrees"] is False  # the runs saw r = 0.8 exceed T: it is not within T
    out = _answer_to_runs({"r_domain": 1.0, "runs": verdict(1.0, runs)}, "rise within T")
    assert out["r_domain"] is None and out["r_domain_law"] == 1.0 and "contradicts the runs" in out["message"]
    assert "between r_d=0.5 and r_d=0.8" in out["message"]


def test_usage1_not_bracketed_without_runs_at_that_size():
    rows = _runs([0.0, 1.0], lambda r, d: 3.0, lambda r, d: 4.0)
    assert usage1_bracket(rows, 1e6, 1e5, 3.0, 0.03)["bracketed"] is False
    assert verdict(0.5, usage1_bracket(rows, 1e6, 1e5, 3.0, 0.03))["agrees"] is None


def test_usage2_bracket_reads_each_run_at_the_same_domain_budget():
    # domain loss falls with domain tokens seen (r D) and rises with the general share diluting it at large D:
    # at D_d = 1e4 domain tokens the best share is 0.5
    def domain(r, d):
        return 3.0 + 5.0 * (r * d) ** -0.2 + 0.4 * (r - 0.5) ** 2

    rows = _runs([0.1, 0.2, 0.5, 0.8, 1.0], lambda r, d: 3.0, domain, ds=np.geomspace(1e3, 1.2e5, 12))
    runs = usage2_bracket(rows, 1e5, 1e4)
    assert runs["best_observed"] == 0.5 and runs["bracket"] == [0.2, 0.8] and runs["bracketed"]
    assert verdict(0.95, runs)["agrees"] is False and verdict(0.4, runs)["agrees"] is True


def test_usage1_pure_domain_answer_contradicts_runs_that_exceed_t_at_r_1():
    lg0 = 3.0
    rows = _runs([0.2, 0.5, 1.0], lambda r, d: lg0 * (1 + 0.09 * r**3), lambda r, d: 4.0)  # 9% at r = 1
    runs = usage1_bracket(rows, 1e5, 1e5, lg0, 0.03)
    assert runs["bracket"] == [0.5, 1.0] and verdict(1.0, runs)["agrees"] is False
    everything_ok = usage1_bracket(_runs([0.2, 1.0], lambda r, d: lg0, lambda r, d: 4.0), 1e5, 1e5, lg0, 0.03)
    assert everything_ok["bracket"] == [1.0, 1.0] and verdict(1.0, everything_ok)["agrees"] is True
