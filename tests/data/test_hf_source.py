"""The `corpora.hf` source on a Hugging Face `datasets` dataset held locally (a folder of JSON-lines files, as
`datasets.load_dataset` reads it without the hub): records stream in as documents, and through the corpora
stage they land in the domain's splits like any other source."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cptlaw.data.corpora import SPLITS
from cptlaw.data.corpus_stream import make_domain
from cptlaw.data.extract import ExtractError
from cptlaw.data.user_sources import hf_docs

pytest.importorskip("datasets", reason="the `datasets` package (extra `hf`) is not installed")


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "my_hf_dataset"
    folder.mkdir()
    rows = [{"text": f"record {i} " + "word " * (20 + i % 13), "label": i % 2} for i in range(300)]
    with open(folder / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return folder, rows


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_dataset_records_become_documents(hf_folder, streaming):
    folder, rows = hf_folder
    docs = list(hf_docs({"name": "mine", "domain": "legal", "path": str(folder), "streaming": streaming}))
    assert [d.text for d in docs] == [r["text"] for r in rows]
    assert docs[7].id == "mine/7" and {d.source for d in docs} == {"mine"}
    limited = list(hf_docs({"name": "mine", "domain": "legal", "path": str(folder), "max_docs": 5}))
    assert len(limited) == 5


def test_hf_dataset_errors_name_the_field_and_the_dataset(hf_folder, tmp_path):
    folder, _ = hf_folder
    with pytest.raises(ExtractError, match="no (column|field) 'body'"):
        list(
            hf_docs(
                {
                    "name": "mine",
                    "domain": "legal",
                    "path": str(folder),
                    "text_field": "body",
                    "streaming": True,
                }
            )
        )
    with pytest.raises(ExtractError, match="cannot load dataset"):
        list(hf_docs({"name": "mine", "domain": "legal", "path": str(tmp_path / "absent")}))


def test_hf_dataset_streams_through_the_corpora_stage(hf_folder, tmp_path):
    folder, rows = hf_folder
    c = {"sample_chars": 2000, "min_chars": 32, "val_frac": 0.1, "test_frac": 0.1, "max_chars": None,
         "out_dir": str(tmp_path / "corpora")}  # fmt: skip
    spec = {"name": "mine", "domain": "legal", "path": str(folder), "streaming": True}
    stats = make_domain("legal", [], tmp_path / "raw", [("hf", spec)], c, seed=0)
    frames = {s: pd.read_parquet(tmp_path / "corpora" / "legal" / f"{s}.parquet") for s in SPLITS}
    assert sum(len(f) for f in frames.values()) == len(rows) == stats["clean"]["kept"]
    assert set(pd.concat(frames.values())["text"]) == {r["text"].strip() for r in rows}  # normalised
    assert len(frames["train"]) > len(frames["val"]) > 0
