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
