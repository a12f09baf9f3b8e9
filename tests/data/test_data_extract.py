"""Every extractor on its fixture format; ontology packing by branch."""

from __future__ import annotations

import pytest

from cptlaw.data.extract import (
    PACKED,
    Entry,
    ExtractError,
    brown_sentence,
    extract,
    osis_text,
    pack_entries,
    parse_obo,
)


def test_brown_strips_tags_and_reattaches_punctuation(raw_tree):
    docs = list(extract("brown", raw_tree / "brown", "brown"))
    assert [d.id for d in docs] == ["brown/ca01", "brown/cb02"]  # README is not a Brown file
    text = docs[0].text
    assert text.startswith("The Fulton County Grand Jury said Friday an investigation of Atlanta's")
    assert '"no evidence"' in text and "took place." in text and "City, which" in text
    assert "/" not in text


def test_brown_sentence():
    assert brown_sentence("He/pps did/dod n't/* go/vb ./.") == "He didn't go."


@pytest.mark.parametrize("src", ["sotu", "shakespeare"])
def test_text_files_one_document_per_file(raw_tree, src):
    (doc,) = extract("text_files", raw_tree / src, src)
    assert doc.id.startswith(f"{src}/") and len(doc.text) > 50


def test_python_source_excludes_tests(raw_tree):
    docs = list(extract("python_source", raw_tree / "code", "sympy", exclude=["*/tests/*"]))
    assert [d.id for d in docs] == ["sympy/pkg/mod.py"]
    assert "    return x * x" in docs[0].text  # indentation kept


def test_spdx_json(raw_tree):
    (doc,) = extract("spdx_json", raw_tree / "spdx", "spdx")
    assert doc.text.startswith("MIT License\n\nPermission is hereby granted")


def test_abc_one_document_per_tune(raw_tree):
    docs = list(extract("abc", raw_tree / "music", "music21"))
    assert len(docs) == 2 and docs[0].text.startswith("X:1") and "T:The Second Tune" in docs[1].text
    assert len({d.id for d in docs}) == 2


def test_metamath_drops_proofs_and_splits_sections(raw_tree):
    docs = list(extract("metamath", raw_tree / "metamath", "metamath"))
    assert len(docs) == 3  # preamble + two sections
    joined = "\n".join(d.text for d in docs)
    assert "ABCDEFG" not in joined and "simpld" not in joined  # proofs gone
    assert "mp2 $p |- ch $." in joined and "Axiom of modus ponens" in joined
    assert "Set theory" in docs[2].text


def test_metamath_caps_document_size(raw_tree):
    docs = list(extract("metamath", raw_tree / "metamath", "metamath", max_doc_chars=60))
    assert len(docs) > 3 and len({d.id for d in docs}) == len(docs)


def test_sword_ztext_books_without_markup_or_notes(raw_tree):
    docs = list(extract("sword_ztext", raw_tree / "bible", "web"))
    assert len(docs) == 2
    assert "The book of the genealogy, & more." in docs[0].text
    assert "footnote" not in docs[0].text and "<" not in docs[0].text
    assert osis_text("<l>a</l><l>b</l>").split() == ["a", "b"]


def test_parse_obo_entries(raw_tree):
    obo = (raw_tree / "hpo" / "hp.obo").read_text()
    entries = {e.id: e for e in parse_obo(obo)}
    assert "HP:0009999" not in entries  # obsolete
    assert "HP:0008888" not in entries  # bare name
    assert entries["HP:0000234"].text == 'Abnormality of the head: An abnormality of the "head".'
    assert entries["HP:0001250"].parents == ("HP:0000707",)
    assert "HP:0000001" in entries  # comment only
    assert "HP:0000001" not in {e.id for e in parse_obo(obo, require_def=True)}


def test_obo_packs_by_branch(raw_tree):
    docs = list(extract("obo", raw_tree / "hpo", "hpo", sample_chars=1000, branch_depth=2))
    assert all(d.kind == PACKED for d in docs)
    by_branch = {d.id.split("/")[1]: d.text for d in docs}
    # depth 2 under All → Phenotypic abnormality: head/neck and nervous system are separate samples
    assert "Abnormality of the head" in by_branch["HP:0000152"] and "Seizure" not in by_branch["HP:0000152"]
    assert "Seizure" in by_branch["HP:0000707"]


def test_pack_entries_respects_size_and_branch():
    entries = [Entry("R", "root: r", ())] + [Entry(f"A{i:02d}", "a" * 30, ("R",)) for i in range(10)]
    docs = list(pack_entries(entries, "src", sample_chars=100, branch_depth=0))
    assert all(len(d.text) <= 100 for d in docs)
    assert sum(d.text.count("a" * 30) for d in docs) == 10  # every entry exactly once
    assert len({d.id for d in docs}) == len(docs)
    split = list(pack_entries(entries, "src", sample_chars=10_000, branch_depth=1))
    assert len(split) == 11  # each depth-1 entry is its own branch; the root its own


def test_go_sqlite_packs_by_namespace(raw_tree):
    docs = list(extract("go_sqlite", raw_tree / "go", "go", sample_chars=1000, branch_depth=0))
    texts = {d.id.split("/")[1]: d.text for d in docs}
    assert set(texts) == {"GO:0008150", "GO:0003674"}  # one branch per namespace root
    assert "sexual reproduction" in texts["GO:0008150"] and "catalytic" in texts["GO:0003674"]
    assert "no definition" not in "".join(texts.values())


def test_extract_errors(raw_tree, tmp_path):
    with pytest.raises(ExtractError, match="unknown extractor 'nope'"):
        extract("nope", raw_tree / "brown", "brown")
    with pytest.raises(ExtractError, match="run the fetch stage"):
        list(extract("brown", tmp_path / "missing", "brown"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExtractError, match="source 'x': no `\\*.obo` file"):
        list(extract("obo", tmp_path / "empty", "x"))
