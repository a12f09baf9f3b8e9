"""Fixtures of the stage tests (`cpt_project`, `lm_project`, `mlflow_uri` come from tests/conftest.py)."""

import pytest


@pytest.fixture
def project(tmp_path, mlflow_uri, monkeypatch):
    """An empty project root (dvc.yaml + conf/) with a tmp MLflow store."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("CPTLAW_ROOT", str(tmp_path))
    return tmp_path
