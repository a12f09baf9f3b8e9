"""Verdicts of the validation runs: DOS vs random and r* vs the best share, judged against the measured seed noise."""

import numpy as np
import pandas as pd
import pytest

from cptlaw.decide.inputs import DecisionError
from cptlaw.decide.ratio_runs import ratio_points, ratio_verdict
from cptlaw.decide.validation import arm_table, paired_difference


def test_paired_difference_interval_is_students_t_over_seeds():
    a = {0: 5.00, 1: 5.02, 2: 4.98}
    b = {0: 5.10, 1: 5.11, 2: 5.09}
    out = paired_difference(a, b, level=0.9)
    d = np.array([-0.10, -0.09, -0.11])
    hw = 2.919986 * d.std(ddof=1) / np.sqrt(3)  # t_{0.95, 2}
    assert out["n_seeds"] == 3 and out["mean"] == pytest.approx(-0.10)
    assert out["half_width"] == pytest.approx(hw, rel=1e-5)
    assert out["ci"] == pytest.approx([-0.10 - hw, -0.10 + hw], rel=1e-5)
    assert out["finding"] is True


def test_a_gap_inside_the_seed_noise_is_not_a_finding():
    rng = np.random.default_rng(0)
    a = {s: 5.0 + rng.normal(0, 0.05) for s in range(3)}
    b = {s: 5.01 + rng.normal(0, 0.05) for s in range(3)}
    out = paired_difference(a, b)
    assert out["ci"][0] < 0 < out["ci"][1] and out["finding"] is False


def test_one_seed_gives_no_verdict_and_unpaired_seeds_are_ignored():
    out = paired_difference({0: 5.0, 7: 1.0}, {0: 5.2})
    assert out["n_seeds"] == 1 and out["finding"] is None and out["ci"] is None
    assert "no measured seed noise" in out["message"]


def test_arm_table_pairs_arms_by_seed():
    rows, arms = [], {}
    for arm, base in (("random", 5.0), ("dos", 4.9)):
        for seed in range(3):
            rid = f"{arm}{seed}"
            arms[rid] = (arm, seed)
            loss = base + 0.01 * seed  # the same seed effect in both arms: pairing removes it
            rows += [
                {"run_id": rid, "D": d, "domain_loss": loss + 1 / d, "general_loss": 6.0} for d in (10, 100)
            ]
    table = pd.DataFrame(rows)
    runs = pd.DataFrame({"run_id": list(arms), "metrics.ppl_mean": 10.0, "metrics.ppl_std": 2.0})
    by = {r["arm"]: r for r in arm_table(table, runs, arms)}
    vs = by["dos"]["domain_loss_vs_random"]
    assert vs["mean"] == pytest.approx(-0.1) and vs["sd"] == pytest.approx(0, abs=1e-12) and vs["finding"]
    assert by["dos"]["n_seeds"] == 3 and by["dos"]["domain_loss"] == pytest.approx(4.91 + 0.01)
    assert by["random"]["domain_loss_vs_random"]["mean"] == 0.0


def test_ratio_points_clip_to_the_unit_interval():
    assert ratio_points(0.5, 0.2, 0.05) == [0.3, 0.5, 0.7]
    assert ratio_points(0.95, 0.2, 0.05) == [0.75, 0.95, 1.0]
    assert ratio_points(1.0, 0.2, 0.05) == [0.8, 1.0]
    assert ratio_points(0.1, 0.2, 0.05) == [0.05, 0.1, 0.3]
    with pytest.raises(DecisionError, match="delta"):
        ratio_points(0.5, 1.5, 0.05)


def test_ratio_verdict_confirms_beats_and_abstains():
    best = {0.3: {0: 5.10, 1: 5.11}, 0.5: {0: 5.00, 1: 5.01}, 0.7: {0: 5.05, 1: 5.06}}
    out = ratio_verdict(best, 0.5, 0.9)
    assert out["confirmed"] is True and out["best_run"] == 0.5
    noisy = {0.3: {0: 5.00, 1: 5.04, 2: 4.97}, 0.5: {0: 5.03, 1: 4.99, 2: 5.01}}
    out = ratio_verdict(noisy, 0.5, 0.9)
    assert out["best_run"] == 0.3 and out["confirmed"] is True and "within seed noise" in out["verdict"]
    beaten = {0.3: {0: 4.90, 1: 4.91, 2: 4.905}, 0.5: {0: 5.00, 1: 5.01, 2: 5.004}}
    out = ratio_verdict(beaten, 0.5, 0.9)
    assert out["confirmed"] is False and "do not confirm" in out["verdict"]
    one = {0.3: {0: 4.9}, 0.5: {0: 5.0}}
    assert ratio_verdict(one, 0.5, 0.9)["confirmed"] is None
