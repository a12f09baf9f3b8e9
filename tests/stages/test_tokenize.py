"""Stage `tokenize` on a fixture project (corpora + tokenizer), and what a CPT run does with a bad store:
one stderr line naming the store and the tokenize stage, exit 2, no MLflow run, finished runs untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from cptlaw.data.token_store import TOKENS, open_store
from tests.helpers.cpt_project import make_tokenizer, overrides, write_base, write_corpora


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_corpora(tmp_path)
    make_tokenizer().save_pretrained(tmp_path / "data" / "tokenizer")
    monkeypatch.setenv("CPTLAW_ROOT", str(tmp_path))
    return tmp_path


def _cfg(root: Path, *extra: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"paths.root={root}", "profile=smoke", "domains=[medical,code]",
                                            "tokenize.progress=false", *extra])  # fmt: skip


def test_stage_writes_every_split_once(project, capsys):
    from cptlaw.stages.tokenize import run

    metrics = run(_cfg(project, "tokenize.workers=2", "tokenize.shard_docs=40"))
    for domain in ("general", "medical", "code"):
        for split in ("train", "val", "test"):
            store = open_store(project / "data" / "tokens" / domain / split,
                               corpus=project / "data" / "corpora" / domain / f"{split}.parquet")  # fmt: skip
            assert store.n_tokens == metrics[domain][split]["tokens"] > 0
    assert metrics["medical"]["train"]["shards_encoded"] == 3  # 120 documents / 40
    assert (
        json.loads((project / "reports" / "metrics" / "tokenize.json").read_text())["code"]["test"][
            "documents"
        ]
        == 30
    )
    capsys.readouterr()
    again = run(_cfg(project))
    assert "shards_encoded" not in again["medical"]["train"] and "up to date" in capsys.readouterr().out


def test_bad_store_stops_a_cpt_run_with_one_line(project, tmp_path):
    write_base(project)  # base model + its tokenizer + the stores
    env = {"CPTLAW_ROOT": str(project), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}  # fmt: skip
    bin_ = project / "data" / "tokens" / "general" / "train" / TOKENS
    whole = bin_.read_bytes()
    bin_.write_bytes(whole[:-10])
    proc = subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.cpt", *overrides(project), f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cpt: error:")]
    assert len(errors) == 1 and "general/train is truncated" in errors[0] and "tokenize stage" in errors[0]
    assert not (tmp_path / "m.db").exists() or _n_runs(f"sqlite:///{tmp_path}/m.db") == 0
    shutil.rmtree(project / "data" / "tokens" / "general")
    from cptlaw.errors import StoreError
    from cptlaw.lm.cpt_run import plan

    with pytest.raises(
        StoreError, match=r"^token store .*general/train does not exist: re-run the tokenize stage"
    ):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            plan(compose("config", overrides=overrides(project)))


def _n_runs(uri: str) -> int:
    import mlflow

    client = mlflow.MlflowClient(uri)
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())
