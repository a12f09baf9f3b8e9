"""The report prints far-extrapolation held-out scores as bounds, ordinary ones as numbers."""

from cptlaw.decide.report import fits_section


def test_held_out_scores_print_as_bounds_when_extrapolation_explodes(tmp_path):
    fit = {"r2": 0.9, "huber": 1e-4, "params": {"E": 1.0}}
    fits = {"n_source_runs": 3, "targets": {"general_code": {
        "n_runs": 3, "fits": {"dcpt": fit},
        "comparison": {"best_overall": "dcpt", "summary": [
            {"form": "dcpt", "split": "r", "r2": -1.5e18, "mape": 1.6e7},
            {"form": "dcpt", "split": "D", "r2": -2.6, "mape": 0.0132},
        ]},
    }}}  # fmt: skip
    lines, _ = fits_section(fits, tmp_path, min_runs_warn=5)
    row = next(line for line in lines if line.startswith("| general_code"))
    assert "r: R² < -10, MAPE > 1000%" in row
    assert "D: R² -2.600, MAPE 1.32%" in row
    assert "e+18" not in row


def test_a_decision_whose_resamples_split_says_so_in_the_table_and_its_notes(tmp_path):
    from cptlaw.decide.report import console_summary, recommend_section

    split = {"separation": 0.88, "medians": [0.587, 0.851], "shares": [0.765, 0.235], "gap": [0.66, 0.85]}
    u1 = {
        "r_domain": 0.587,
        "ci": [0.546, 0.992],
        "status": "binding",
        "tolerance": 0.03,
        "split": split,
        "fragile": "the resampled answers fall into two groups (r_d ≈ 0.587 in 76% of resamples, ≈ 0.851 in 24%)",
    }
    u2 = {"r_domain": 0.162, "ci": [0.14, 0.166], "on_boundary": False, "domain_tokens": 2e4}
    rec = {"config": {"tolerance": 0.03, "ci_level": 0.9},
           "domains": {"math": {"tradeoff": u1, "limited_data": u2, "compute": {"error": "one size"}}}}  # fmt: skip
    lines = recommend_section(rec, tmp_path)
    row = next(line for line in lines if line.startswith("| math"))
    cells = row.split(" | ")
    assert "resamples in two groups" in cells[1] and "resamples in two groups" not in cells[2]
    assert f"- math: {u1['fragile']}" in lines
    summary = console_summary(rec, {}, tmp_path / "report.md", "sqlite:///x.db")
    assert "0.59 CI [0.546, 0.992] (resamples in two groups)" in summary
    assert summary.rstrip().endswith("r_d* 0.16 CI [0.14, 0.166]")
