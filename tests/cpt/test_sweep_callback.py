"""The sweep callback in-process: experiments made up front, a parent run (or the `mlflow run` launcher's run)
exported to jobs, a summary of the jobs' result files, the parent ended FINISHED (never left RUNNING)."""

import json
import os

from mlflow import MlflowClient
from omegaconf import OmegaConf

from cptlaw import tracking
from cptlaw.sweep_callback import PARENT_ENV, SweepParentRun, cpt_experiment_name


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
