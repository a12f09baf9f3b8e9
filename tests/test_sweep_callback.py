"""The sweep callback in-process: experiments made up front, a parent run (or the `mlflow run` launcher's run)
exported to jobs, a summary of the jobs' result files, the parent ended FINISHED (never left RUNNING)."""

import json
import os

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from cptlaw import tracking
from cptlaw.layout import cpt_experiment as cpt_experiment_name
from cptlaw.sweep_callback import PARENT_ENV, SweepParentRun


def _config(tmp_path):
    return OmegaConf.create({
        "cpt": {"study": "dcpt", "domain": "medical"}, "profile_name": "smoke",
        "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}, "overrides": {"task": ["cpt.domain=code,math"]},
                  "sweeper": {"params": {"cpt.domain": "medical", "cpt.r": "0,1"}}},
    })  # fmt: skip


def _callback(tmp_path, mlflow_uri):
    return SweepParentRun("dcpt_grid", OmegaConf.create({"uri": mlflow_uri}), str(tmp_path / "reports"))


def test_parent_run_and_summary(tmp_path, mlflow_uri, monkeypatch):
    monkeypatch.delenv(PARENT_ENV, raising=False)
    cb = _callback(tmp_path, mlflow_uri)
    cb.on_multirun_start(_config(tmp_path))
    parent = cb.parent_id
    assert parent and os.environ[PARENT_ENV] == parent
    # the command-line list wins over the sweeper's: both experiments exist before any job
    client = MlflowClient()
    for d in ("code", "math"):
        assert client.get_experiment_by_name(cpt_experiment_name("dcpt", d)) is not None
    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "cpt_result.json").write_text(json.dumps({"run_id": "x", "status": "skipped", "config_hash": "h"}))
    cb.on_multirun_end(_config(tmp_path))
    assert client.get_run(parent).info.status == "FINISHED"
    summary = json.loads((tmp_path / "reports" / "sweeps" / "dcpt_grid.json").read_text())
    assert summary["n_skipped"] == 1 and summary["runs"][0]["job"] == 0


def test_mlflow_run_launcher_run_is_the_parent(tmp_path, mlflow_uri, monkeypatch):
    tracking.configure(mlflow_uri)
    launcher = tracking.start_detached_run("Default-launch")
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    cb = _callback(tmp_path, mlflow_uri)
    cb.on_multirun_start(_config(tmp_path))
    assert cb.parent_id == launcher and "MLFLOW_RUN_ID" not in os.environ
    cb.on_multirun_end(_config(tmp_path))
    run = MlflowClient().get_run(launcher)
    assert run.info.status == "RUNNING"  # `mlflow run` ends it with the exit status
    assert run.data.tags["cptlaw.stage"] == "sweep"


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
@pytest.mark.parametrize("sweep", ["dcpt_grid", "dcpt_cross", "ppl_regimes", "probe"])
def test_every_sweep_resolves_its_lists_per_profile(profile, sweep, tmp_path):
    from hydra import compose, initialize_config_dir

    from cptlaw.config import CONF_DIR
    from cptlaw.data.subsets import parse_regime

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            [f"+sweep={sweep}", f"profile={profile}", f"paths.root={tmp_path}"],
            return_hydra_config=True,
        )
    params = {k: str(cfg.hydra.sweeper.params[k]) for k in cfg.hydra.sweeper.params}
    assert params["cpt.domain"] and all(d in cfg.domains for d in params["cpt.domain"].split(","))
    for r in params.get("cpt.r", "1").split(","):
        assert 0 <= float(r) <= 1
    for regime in params.get("cpt.regime", "random").split(","):
        parse_regime(regime)
    assert cfg.hydra.callbacks.mlflow_parent.name == sweep
