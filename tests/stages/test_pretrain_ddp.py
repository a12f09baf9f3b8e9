"""Multi-device runs use Lightning's own strategies: a 2-process CPU `ddp_spawn` pre-training run works here
(gradients all-reduced by torch.distributed/gloo) and leaves one model dir and one MLflow run."""

import shutil

import pytest

from tests.helpers.lm_project import pretrain_cfg

pytestmark = pytest.mark.slow


def test_pretrain_with_ddp_spawn_on_two_cpu_processes(lm_project, tmp_path, mlflow_uri):
    from cptlaw import tracking
    from cptlaw.lm.base import base_model_info
    from cptlaw.lm.model import load_causal_lm
    from cptlaw.stages.pretrain import run

    root = tmp_path / "proj"
    shutil.copytree(lm_project, root)
    cfg = pretrain_cfg(root, ["trainer=ddp_cpu", "threads=1", "model.train_sizes=[a]"])
    assert cfg.trainer.strategy == "ddp_spawn" and int(cfg.trainer.devices) == 2
    result = run(cfg)
    assert set(result) == {"a"}
    info = base_model_info(root / "models" / "base" / "a")
    load_causal_lm(root / "models" / "base" / "a")
    assert info["n_tokens"] > 0
    tracking.configure(mlflow_uri)
    runs = tracking.runs_frame(["pretrain"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "metrics.val_loss_general"] > 0
    assert runs.loc[0, "params.devices"] == "2"  # two processes shared the steps (tokens per step doubled)
