"""DDP CPT: `cpt.trainer.devices=2` trains in two spawned CPU processes (Lightning `ddp_spawn`, gloo) with the
same global batch as one process, gives the same losses within noise, and logs one MLflow run, not two."""

import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from tests.helpers.cpt_project import overrides

pytestmark = pytest.mark.slow


def _cfg(root, *extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*overrides(root, r=0.5, n_tokens=2560), "threads=1", *extra])


def test_two_process_ddp_matches_one_process_and_logs_one_run(cpt_project, mlflow_uri, monkeypatch):
    from cptlaw import tracking
    from cptlaw.stages.cpt import run

    monkeypatch.setenv("CPTLAW_ROOT", str(cpt_project))
    one = run(_cfg(cpt_project))
    two = run(_cfg(cpt_project, "cpt.trainer.devices=2"))
    assert one["status"] == two["status"] == "finished"
    assert one["config_hash"] != two["config_hash"]  # the device count is part of the hash
    tracking.configure(mlflow_uri)
    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    assert len(df) == 2 and set(df["status"]) == {"FINISHED"}  # one run per cell, none from the workers
    h1 = tracking.metric_history(one["run_id"], "domain_loss")
    h2 = tracking.metric_history(two["run_id"], "domain_loss")
    assert [s for s, _ in h1] == [s for s, _ in h2]  # the same evaluation points (global tokens)
    assert h1[0][1] == pytest.approx(h2[0][1], abs=1e-6)  # step 0: the same base model
    for (_, a), (_, b) in zip(h1[1:], h2[1:], strict=True):
        assert a == pytest.approx(b, abs=2e-3)  # same global batches, gradients averaged over 2 processes
    assert two["domain_loss_final"] < two["k1"]
    assert len(tracking.metric_history(two["run_id"], "train_loss")) >= 1


def test_batch_not_divisible_by_devices_is_one_line_error(cpt_project, mlflow_uri, monkeypatch):
    from cptlaw.errors import CPTConfigError
    from cptlaw.stages.cpt import run

    monkeypatch.setenv("CPTLAW_ROOT", str(cpt_project))
    with pytest.raises(CPTConfigError, match="multiple of `cpt.trainer.devices`"):
        run(_cfg(cpt_project, "cpt.trainer.devices=2", "cpt.batch_size=3"))
