"""One CPT run in-process: the MLflow schema of docs/CONTRACTS.md, the domain loss falls, skip-if-finished,
force, and bad inputs fail with one-line errors before any run is created."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from cptlaw.lm.model import ModelError
from tests.helpers.cpt_project import check_schema, overrides


def compose_cfg(root, **cpt):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides(root, **cpt))


@pytest.fixture
def env(cpt_project, mlflow_uri, monkeypatch):
    monkeypatch.setenv("CPTLAW_ROOT", str(cpt_project))
    return cpt_project


def test_run_logs_schema_lowers_domain_loss_and_skips(env, capsys):
    from cptlaw import tracking
    from cptlaw.stages.cpt import run

    out = run(compose_cfg(env, regime="c50w40"))
    assert out["status"] == "finished"
    df = tracking.runs_frame(["dcpt-medical"])
    assert len(df) == 1
    row = df.iloc[0]
    history = tracking.metric_history(row.run_id, "domain_loss")
    check_schema(row, history)
    assert row["metrics.domain_loss_final"] < row["metrics.k1"] - 0.1  # CPT lowers the domain test loss
    assert row["metrics.k2"] > 0
    assert (row["params.q_lo"], row["params.q_hi"]) == ("0.3", "0.7")
    assert row["metrics.ppl_mean"] > 0 and row["metrics.log_ppl_std"] > 0
    from mlflow import MlflowClient

    arts = {a.path for a in MlflowClient().list_artifacts(row.run_id)}
    assert {"config.yaml", "loss_curve.png"} <= arts

    # the same config again: skipped; force: a second FINISHED run
    again = run(compose_cfg(env, regime="c50w40"))
    assert again["status"] == "skipped" and again["run_id"] == row.run_id
    assert f"skip: finished as run {row.run_id}" in capsys.readouterr().out
    assert run(compose_cfg(env, regime="c50w40", force=True))["status"] == "finished"
    assert len(tracking.runs_frame(["dcpt-medical"])) == 2


@pytest.mark.parametrize(
    ("cpt", "message"),
    [
        ({"r": 1.3}, r"`cpt.r` must be in \[0, 1\], got 1.3"),
        ({"regime": "hot"}, "unknown `cpt.regime` 'hot'"),
        ({"domain": "astrology"}, "unknown domain 'astrology'"),
        ({"base": "huge"}, "base model .*huge does not exist"),
        ({"domain": "code", "regime": "c50w20"}, "needs perplexity scores"),
        ({"n_tokens": 10**7, "on_short_data": "error"}, "needs .* tokens but holds"),
        ({"lr_factor": 2.0}, "re-warming"),
        ({"trainer.accelerator": "cuda"}, r"cpt.trainer .* cannot run on this machine"),
    ],
)
def test_bad_inputs_raise_before_any_run(env, mlflow_uri, cpt, message):
    from cptlaw.errors import BadInput
    from cptlaw.stages.cpt import run

    with pytest.raises(BadInput, match=message):
        run(compose_cfg(env, **cpt))
    if Path(mlflow_uri[len("sqlite:///") :]).exists():  # only the data check comes after the skip check
        from cptlaw import tracking

        assert tracking.runs_frame(["dcpt-medical"], finished_only=False).empty


@pytest.mark.slow
def test_bad_input_cli_one_line_no_traceback(cpt_project, tmp_path):
    """r outside [0, 1] on the command line (an unreachable server: tests/test_tracking_server.py)."""
    env = {"CPTLAW_ROOT": str(cpt_project), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.cpt", *overrides(cpt_project, r=1.5), f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cpt: error:")]
    assert errors == ["cpt: error: `cpt.r` must be in [0, 1], got 1.5"], proc.stderr


def test_selected_ids_regime_hashes_the_same_in_a_moved_project(cpt_project, tmp_path, monkeypatch):
    """select names its subset `ids:<project-relative path>`, read from the config's project whatever the cwd
    or environment of the process (a reused joblib worker's may be another project's): the validate arms keep
    their config hashes (so their finished runs) when the project is cloned or moved, and another selection in
    the same file is another run."""
    import shutil

    import pandas as pd

    from cptlaw.lm.cpt_run import plan

    ids = pd.read_parquet(cpt_project / "data/corpora/medical/train.parquet")["id"].astype(str)[:20]
    hashes = []
    monkeypatch.chdir(tmp_path)
    for name in ("here", "moved"):
        root = tmp_path / name
        shutil.copytree(cpt_project, root, ignore=shutil.ignore_patterns("outputs", "mlruns"))
        (root / "data/selected/medical").mkdir(parents=True)
        (root / "data/selected/medical/ids.txt").write_text("\n".join(ids) + "\n")
        monkeypatch.setenv("CPTLAW_ROOT", str(root if name == "here" else tmp_path))
        hashes.append(plan(compose_cfg(root, regime="ids:data/selected/medical/ids.txt")).config_hash)
    assert hashes[0] == hashes[1]
    (root / "data/selected/medical/ids.txt").write_text("\n".join(ids[:10]) + "\n")
    assert plan(compose_cfg(root, regime="ids:data/selected/medical/ids.txt")).config_hash != hashes[1]


def test_any_local_hf_dir_is_a_base_model(env, tmp_path):
    """`model.name_or_path` (model=hf_local): a foreign HF dir without cptlaw.json, LR from `cpt.lr`."""
    import shutil

    from cptlaw import tracking
    from cptlaw.stages.cpt import run

    ext = tmp_path / "my-llama"
    shutil.copytree(env / "models" / "base" / "xs", ext)
    (ext / "cptlaw.json").unlink()
    cfg = compose_cfg(env, lr=1e-3)
    cfg.model.name_or_path, cfg.model.label = str(ext), "ext"
    assert run(cfg)["status"] == "finished"
    row = tracking.runs_frame(["dcpt-medical"]).iloc[0]
    assert row["params.base_model"] == "ext" and float(row["params.lr"]) == 1e-3


def test_bfloat16_weights_are_their_own_runs(env):
    """`model.dtype=bfloat16` loads the base in bfloat16 and hashes as a different run; float32 (the default)
    keeps the hash it had before the option existed, so finished runs stay finished."""
    from omegaconf import open_dict

    from cptlaw.lm.cpt_run import plan
    from cptlaw.stages.cpt import run

    cfg = compose_cfg(env)
    p32 = plan(cfg)
    with open_dict(cfg):
        del cfg.model.dtype  # the config as it was before `model.dtype`
    assert plan(cfg).config_hash == p32.config_hash
    cfg = compose_cfg(env, **{"trainer.precision": "bf16-true"})
    with open_dict(cfg):
        cfg.model.dtype = "bfloat16"
    assert plan(cfg).config_hash != p32.config_hash
    result = run(cfg)
    assert result["status"] == "finished" and result["domain_loss_final"] < result["k1"]
    with open_dict(cfg):
        cfg.model.dtype = "float12"
    with pytest.raises(ModelError, match="model.dtype must be one of"):
        plan(cfg)
