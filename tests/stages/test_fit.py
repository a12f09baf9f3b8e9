"""The fit stage end to end: synthetic CPT runs logged through cptlaw.tracking into a tmp SQLite store."""

import json

import pytest
from hydra import compose, initialize_config_dir

from cptlaw import tracking
from cptlaw.config import CONF_DIR
from tests.helpers.fit_runs import log_runs


@pytest.mark.slow
def test_fit_stage_end_to_end(mlflow_uri, tmp_path, monkeypatch):
    n_runs = log_runs(mlflow_uri)
    monkeypatch.setenv("CPTLAW_ROOT", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "profile=smoke", "domains=[medical,code]", "fit.runs=store", "fit.n_starts=8", "fit.n_refine=4",
            "fit.n_polish=2", "fit.bootstrap=2", "fit.ppl_stats=[ppl]", "fit.holdouts.cross=[]", "fit.max_holdout_groups=2", "fit.holdouts.domain=[N]", "fit.holdouts.general=[r]",
            "fit.laws.general=[dcpt,dcpt_forgetting]", "fit.laws.ppl=[ppl_nointeraction]",
        ])  # fmt: skip
    from cptlaw.stages.fit import run

    fits = run(cfg)
    assert fits["n_source_runs"] == n_runs
    t = fits["targets"]
    assert t["domain_medical"]["fits"]["dcpt"]["r2"] > 0.99
    assert t["domain_medical"]["n_runs"] == 12 and t["domain_medical"]["n_points"] == 60
    assert t["general_code"]["fits"]["dcpt_forgetting"]["r2"] > 0.99
    assert t["cross"]["fits"]["dcpt_cross"]["r2"] > 0.95
    assert t["ppl_medical"]["fits"]["ppl_nointeraction"]["r2"] > 0.99 and "optimum" in t["ppl_medical"]
    assert "ppl_code" in t and t["ppl_code"]["skipped"]["ppl_nointeraction"].startswith("0 finished runs")
    assert t["domain_medical"]["comparison"]["best"]["N"] in ("dcpt", "dcpt_nocoupling")
    assert "bootstrap" in t["domain_medical"]
    reports = tmp_path / "reports"
    metrics = json.loads((reports / "metrics" / "fit.json").read_text())
    assert metrics["domain_medical"]["dcpt"]["train"]["r2"] > 0.99
    assert "heldout_N" in metrics["domain_medical"]["dcpt"]
    plots = {p.name for p in (reports / "plots" / "fit").iterdir()}
    assert {"domain_medical_obs_pred.png", "domain_medical_loss_vs_r.png", "ppl_medical_surface.png"} <= plots
    fit_runs = tracking.runs_frame(["fit"])
    assert len(fit_runs) == 1 and fit_runs["tags.cptlaw.n_source_runs"].iloc[0] == str(n_runs)

    # A fit that crashes part-way (here: one target's fit raises) leaves the last table and fits together.
    table, fits_json = (reports / "fit_table.csv").read_bytes(), (reports / "fits.json").read_bytes()
    import cptlaw.fitting
    import cptlaw.stages.fit as fit_stage

    with tracking.run("dcpt-medical", params={"domain": "medical", "regime": "all", "r": 0.7, "n_params": 100000,
                                              "seed": 1}):  # a new run: the table would change  # fmt: skip
        tracking.log_metrics({"n_params": 1e5, "r": 0.7, "k1": 4.0, "k2": 0.3})
        tracking.log_metrics({"domain_loss": 3.5, "general_loss": 3.1}, step=20000)
    monkeypatch.setattr(cptlaw.fitting, "fit_target", lambda *a: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError, match="crash"):
        fit_stage.run(cfg)
    assert (reports / "fit_table.csv").read_bytes() == table
    assert (reports / "fits.json").read_bytes() == fits_json


def test_fit_takes_the_runs_of_the_current_sweeps_only(mlflow_uri, tmp_path, monkeypatch):
    """Runs of earlier base models stay in the store; `fit.runs=sweeps` fits only the cells the sweep summaries
    list (what the current sweeps made or reused), `fit.runs=store` every finished run."""
    from cptlaw.errors import FitStageError
    from cptlaw.stages.fit import load_tables

    n_runs = log_runs(mlflow_uri)
    monkeypatch.setenv("CPTLAW_ROOT", str(tmp_path))

    def cfg(*extra):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=["profile=smoke", "domains=[medical,code]", *extra])

    with pytest.raises(FitStageError, match="no sweep summaries .* fit.runs=store"):
        load_tables(cfg())
    current = list(tracking.runs_frame(["dcpt-medical"])["run_id"])[:5]
    sweeps = tmp_path / "reports" / "sweeps"
    sweeps.mkdir(parents=True)
    (sweeps / "dcpt_grid.json").write_text(json.dumps({"runs": [{"run_id": r} for r in current]}))
    assert sorted(load_tables(cfg())[2]) == sorted(current)
    assert len(load_tables(cfg("fit.runs=store"))[2]) == n_runs
    with pytest.raises(FitStageError, match="fit.runs"):
        load_tables(cfg("fit.runs=everything"))
