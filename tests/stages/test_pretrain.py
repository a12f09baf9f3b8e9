"""The pretrain stage end to end on fixture corpora: a loadable model dir, cptlaw.json, an MLflow run."""

import json
import shutil

import pytest

from cptlaw.lm.model import ModelError
from tests.helpers.lm_project import pretrain_cfg


@pytest.fixture
def project(lm_project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(lm_project, root)
    return root


def test_pretrain_stage_end_to_end(project, mlflow_uri):
    from cptlaw import tracking
    from cptlaw.lm.base import base_model_info
    from cptlaw.lm.model import load_causal_lm, non_embedding_params
    from cptlaw.stages.pretrain import run

    cfg = pretrain_cfg(project)
    result = run(cfg)
    assert set(result) == {"a", "b"}
    assert result["a"]["n_params"] < result["b"]["n_params"]
    for size in ("a", "b"):
        model = load_causal_lm(project / "models" / "base" / size)
        info = base_model_info(project / "models" / "base" / size)
        assert non_embedding_params(model) == info["n_params"]
        assert info["n_tokens"] == 10 * 4 * 32 and info["seq_len"] == 32
        assert info["final_lr"] == pytest.approx(cfg.pretrain.min_lr)
        assert (project / "models" / "base" / size / "tokenizer.json").is_file()
    metrics = json.loads((project / "reports" / "metrics" / "pretrain.json").read_text())
    assert {"val_loss_general", "val_loss_medical", "val_loss_code", "tokens_per_s"} <= set(metrics["a"])

    tracking.configure(mlflow_uri)
    runs = tracking.runs_frame(["pretrain"])
    assert len(runs) == 2
    for key in ("n_params", "n_tokens", "tokens_per_s", "train_loss", "val_loss_general", "val_loss_medical"):
        assert runs[f"metrics.{key}"].notna().all(), key
    curve = tracking.metric_history(runs["run_id"].iloc[0], "train_loss")
    assert len(curve) >= 3

    again = run(cfg)  # same config: skipped, same numbers
    assert again == result
    assert len(tracking.runs_frame(["pretrain"])) == 2


def test_base_models_carry_provenance(project, mlflow_uri):
    from cptlaw import tracking
    from cptlaw.config import to_dict
    from cptlaw.data.version import content_version
    from cptlaw.lm.base import base_model_info
    from cptlaw.provenance import git_revision, relative_paths
    from cptlaw.stages.pretrain import run

    cfg = pretrain_cfg(project, ["model.train_sizes=[a]"])
    run(cfg)
    info = base_model_info(project / "models" / "base" / "a")
    record = info["provenance"]
    assert record["config_hash"] == info["config_hash"]  # the skip-if-finished key, unchanged
    tracking.configure(mlflow_uri)
    assert tracking.runs_frame(["pretrain"]).loc[0, "tags.cptlaw.config_hash"] == info["config_hash"]
    general = project / "data" / "corpora" / "general" / "train.parquet"
    assert record["data_version"] == content_version([general], project)
    assert record["git_rev"] == git_revision()
    assert record["config"] == json.loads(json.dumps(relative_paths(to_dict(cfg), str(project))))
    assert str(project) not in json.dumps(record)  # the project's own paths are recorded relative to it
    assert record["config"]["pretrain"]["n_tokens"] == 1280


def test_schedule_counts_tokens_over_all_processes():
    from omegaconf import OmegaConf

    from cptlaw.lm.pretrain import schedule

    p = OmegaConf.create({"batch_size": 4, "seq_len": 32, "n_tokens": 1280, "warmup_frac": 0.25})
    one = schedule(p, OmegaConf.create({"devices": 1, "strategy": "auto"}))
    assert (one.world, one.tokens_per_step, one.max_steps, one.warmup_steps) == (1, 128, 10, 2)
    two = schedule(p, OmegaConf.create({"devices": 2, "strategy": "ddp_spawn"}))
    assert (two.world, two.tokens_per_step, two.max_steps, two.warmup_steps) == (2, 256, 5, 1)
    tiny = schedule(OmegaConf.merge(p, {"n_tokens": 10}), OmegaConf.create({"devices": 1}))
    assert tiny.max_steps == 1  # at least one step


def test_pretrain_lowers_loss(project, mlflow_uri):
    from cptlaw.stages.pretrain import run

    result = run(
        pretrain_cfg(project, ["model.train_sizes=[b]", "pretrain.n_tokens=4096", "pretrain.lr=1e-2"])
    )
    # untrained loss is about ln(vocab) = ln(300) = 5.7 nats
    assert result["b"]["val_loss_general"] < 4.5


def test_unknown_size_and_missing_tokenizer(project, mlflow_uri):
    from cptlaw.stages.pretrain import run

    with pytest.raises(ModelError, match="unknown sizes"):
        run(pretrain_cfg(project, ["model.train_sizes=[zz]"]))
    with pytest.raises(ModelError, match=r"^trainer .* cannot run on this machine: Precision 'fp12'"):
        run(pretrain_cfg(project, ["trainer.precision=fp12"]))
    assert not list((project / "models" / "base").glob("*/config.json"))  # nothing trained
    shutil.rmtree(project / "data" / "tokenizer")
    with pytest.raises(ModelError, match="tokenizer dir .* does not exist"):
        run(pretrain_cfg(project))


def test_hf_local_skips_pretraining(project, mlflow_uri):
    from cptlaw.lm.model import build_model
    from cptlaw.stages.pretrain import run

    local = project / "local-lm"
    build_model({"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}, 300, 32, seed=0).save_pretrained(
        local
    )
    result = run(pretrain_cfg(project, ["model=hf_local", f"model.name_or_path={local}"]))
    assert "skipped" in result
    assert json.loads((project / "reports" / "metrics" / "pretrain.json").read_text()) == result
    assert not any((project / "models" / "base").iterdir())


def test_sizes_side_by_side_train_the_same_models(project, tmp_path, mlflow_uri):
    """pretrain.n_jobs=2 trains the sizes in two worker processes: the same weights and validation losses as
    one after the other (init and data order come from the seed alone), one MLflow run per size."""
    from cptlaw import tracking
    from cptlaw.stages.pretrain import run

    serial = run(pretrain_cfg(project, [f"paths.models={tmp_path}/serial"]))
    parallel = run(pretrain_cfg(project, [f"paths.models={tmp_path}/parallel", "pretrain.n_jobs=2"]))
    assert list(parallel) == ["a", "b"]
    for size in ("a", "b"):
        weights = [
            (tmp_path / kind / "base" / size / "model.safetensors").read_bytes()
            for kind in ("serial", "parallel")
        ]
        assert weights[0] == weights[1], size
        for key in ("val_loss_general", "val_loss_medical", "train_loss", "n_tokens"):
            assert parallel[size][key] == serial[size][key], (size, key)
    tracking.configure(mlflow_uri)
    assert len(tracking.runs_frame(["pretrain"])) == 4
    with pytest.raises(ModelError, match="one-device trainer"):
        run(pretrain_cfg(project, [f"paths.models={tmp_path}/ddp", "pretrain.n_jobs=2", "trainer=ddp_cpu"]))
