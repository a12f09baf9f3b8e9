"""One home for names and layout: studies, MLflow experiment names and the files the stages exchange.

Every stage, driver, sweep callback and decision module builds a name or a path through here, so renaming
one is a one-line change. Light on purpose (standard library only): the sweep callback and the fit stage
import it without paying for torch or mlflow. `cfg` is any config with `tracking.experiment_prefix` and
`paths.*` (a Hydra `DictConfig` or a plain namespace).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# CPT studies (`cpt.study`) → the stem of their MLflow experiment, `<prefix><stem>-<domain>`.
STUDIES = {"dcpt": "dcpt", "ppl_regimes": "ppl-regimes", "probe": "probe", "validate": "validate"}
# Stages that log one experiment of their own, named like the stage.
STAGE_EXPERIMENTS = ("pretrain", "score", "fit", "recommend", "select", "report")
CPT_RESULT_FILE = "cpt_result.json"  # a CPT job's summary in its Hydra job dir, read by the sweep callback


def prefix(cfg: Any) -> str:
    """`tracking.experiment_prefix` (e.g. `alice-`), or ''."""
    tracking = cfg.get("tracking") if hasattr(cfg, "get") else getattr(cfg, "tracking", None)
    value = tracking.get("experiment_prefix") if tracking is not None else None
    return str(value or "")


def cpt_experiment(study: str, domain: str, prefix: str = "") -> str:
    """MLflow experiment of a CPT run (docs/CONTRACTS.md): `dcpt-<domain>`, `ppl-regimes-<domain>`, ..."""
    return f"{prefix}{STUDIES.get(study, study)}-{domain}"


def cpt_experiments(cfg: Any, study: str, domains: Any) -> list[str]:
    """The experiments of one study over several domains, with the config's prefix."""
    return [cpt_experiment(study, str(d), prefix(cfg)) for d in domains]


def stage_experiment(cfg: Any, stage: str) -> str:
    """MLflow experiment of a stage's own runs (`pretrain`, `score`, `fit`, ...), with the config's prefix."""
    return f"{prefix(cfg)}{stage}"


# ------------------------------------------------------------------------------------------ files


def corpus_split(cfg: Any, domain: str, split: str) -> Path:
    """`data/corpora/<domain>/<split>.parquet`: one split of one domain (stage `corpora`)."""
    return Path(cfg.paths.corpora) / str(domain) / f"{split}.parquet"


def token_store(cfg: Any, domain: str, split: str) -> Path:
    """`data/tokens/<domain>/<split>/`: one split as a memory-mapped token store (stage `tokenize`)."""
    return Path(cfg.paths.tokens) / str(domain) / str(split)


def score_file(cfg: Any, domain: str, base: str) -> Path:
    """`data/scores/<domain>/<base>.parquet`: per-sample perplexity under base model `base` (stage `score`)."""
    return Path(cfg.paths.scores) / str(domain) / f"{base}.parquet"


def base_model(cfg: Any, size: str) -> Path:
    """`models/base/<size>/`: a pre-trained base model (stage `pretrain`)."""
    return Path(cfg.paths.base_models) / str(size)


def reports(cfg: Any) -> Path:
    return Path(cfg.paths.reports)


def fits_file(cfg: Any) -> Path:
    """`reports/fits.json` (stage `fit`)."""
    return reports(cfg) / "fits.json"


def fit_table_file(cfg: Any) -> Path:
    """`reports/fit_table.csv`: the (run, D) points the laws were fitted on (stage `fit`)."""
    return reports(cfg) / "fit_table.csv"


def metrics_file(cfg: Any, stage: str) -> Path:
    """`reports/metrics/<stage>.json`: a stage's DVC metrics."""
    return reports(cfg) / "metrics" / f"{stage}.json"


def plots_dir(cfg: Any, stage: str) -> Path:
    """`reports/plots/<stage>/`: a stage's plots (DVC plots and MLflow artifacts)."""
    return reports(cfg) / "plots" / stage


def stage_output(cfg: Any, stage: str) -> Path:
    """`reports/<stage>.json`: a decision stage's main output (`recommend`, `validate`)."""
    return reports(cfg) / f"{stage}.json"


def sweep_summary(reports_dir: str | Path, sweep: str) -> Path:
    """`reports/sweeps/<sweep>.json`: run id, config hash and status of every cell of a sweep."""
    return Path(reports_dir) / "sweeps" / f"{sweep}.json"


def selection_dir(cfg: Any, domain: str) -> Path:
    """`data/selected/<domain>/`: `ids.txt` and `selection.json` of a DOS selection (stage `select`)."""
    return Path(cfg.paths.selected) / str(domain)


def selection_file(cfg: Any, domain: str) -> Path:
    return selection_dir(cfg, domain) / "selection.json"


def in_project(path: str | Path, root: str | Path) -> str:
    """`path` relative to the project root when it lies inside it (else absolute): what a file that travels
    with the project (a DVC output, a regime name that enters a config hash) records, so a moved or cloned
    project reads the same."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
