"""The fixture project shared by the CPT tests (see cpt_fixtures.py)."""

from pathlib import Path

import pytest
from cpt_fixtures import write_base, write_corpora, write_scores


@pytest.fixture(scope="session")
def cpt_project(tmp_path_factory) -> Path:
    """A project root with corpora, tokenizer, base model `xs` and medical scores (shared, read-only)."""
    root = tmp_path_factory.mktemp("cptproj")
    (root / "conf").mkdir()  # project_root() finds dvc.yaml + conf/
    (root / "dvc.yaml").write_text("stages: {}\n")
    write_corpora(root)
    write_base(root)
    write_scores(root)
    return root
