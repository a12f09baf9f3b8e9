"""Shared test set-up: one thread per process (2-core machines), no analytics, a tmp project root."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_RUN_ID", None)

import pytest  # noqa: E402


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A fresh, real SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    return uri
