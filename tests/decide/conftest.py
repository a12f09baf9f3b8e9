"""Fixtures of the decision-stage tests: synthetic fit outputs (decide_synth) and, for the validate stage, the
CPT tests' fixture project (tests/cpt/cpt_fixtures.py: corpora, word tokenizer, tiny base model, scores)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpt"))  # reuse the CPT fixture helpers


@pytest.fixture
def project(tmp_path, mlflow_uri, monkeypatch):
    """An empty project root (dvc.yaml + conf/) with a tmp MLflow store."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("CPTLAW_ROOT", str(tmp_path))
    return tmp_path
