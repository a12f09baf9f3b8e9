"""Byte-level BPE: trains, saves a dir AutoTokenizer loads, round-trips any text, counts tokens; errors."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from cptlaw.data.tokenizer import TokenizerError, count_tokens, load_tokenizer, save_tokenizer, train_bpe

TEXTS = [
    "The jury further said in term-end presentments that the City Executive Committee deserves praise.",
    "def square(x):\n    return x * x\n",
    "Seizure: A seizure is an intermittent abnormality of nervous system physiology.",
    "mp2 $p |- ch $.",
] * 20


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    tok = train_bpe(TEXTS, vocab_size=300, min_frequency=2)
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer")


def test_round_trip_and_special_tokens(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert len(tok) == 300 and tok.eos_token == "<|eos|>" and tok.pad_token == "<|pad|>"
    for text in [*TEXTS[:4], "unseen ∀x ∈ ℝ: émoji 🙂\ttab  two spaces\n"]:
        ids = tok(text)["input_ids"]
        assert tok.eos_token_id not in ids and tok.bos_token_id not in ids  # packing appends EOS itself
        assert tok.decode(ids) == text
    auto = AutoTokenizer.from_pretrained(str(tok_dir))
    assert auto("hello")["input_ids"] == tok("hello")["input_ids"]


def test_count_tokens(tok_dir):
    tok = load_tokenizer(tok_dir)
    texts = TEXTS[:4]
    assert count_tokens(tok, texts, batch_size=3) == sum(len(tok(t)["input_ids"]) for t in texts)


def test_errors(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.vocab_size"):
        train_bpe(TEXTS, vocab_size=100)
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path / "empty")
