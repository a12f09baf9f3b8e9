"""Fixture project for the lm tests: tiny corpora parquet files and a BPE tokenizer built here (no downloads)."""

import numpy as np
import pandas as pd
import pytest

WORDS = {
    "general": "the a of and to in was he it that his her said time man day old new great little house".split(),
    "medical": "patient disease abnormal tissue cell blood heart renal acute chronic syndrome defect".split(),
    "code": "def return self import class for in if else none true false print list dict range".split(),
}


def fixture_texts(domain: str, n: int, seed: int, max_words: int = 60) -> list[str]:
    rng = np.random.default_rng(seed)
    words = WORDS[domain]
    return [" ".join(rng.choice(words, size=rng.integers(3, max_words))) + "." for _ in range(n)]


def write_corpora(root, n_train: int = 120, max_words: int = 60) -> None:
    for k, domain in enumerate(WORDS):
        d = root / "data" / "corpora" / domain
        d.mkdir(parents=True, exist_ok=True)
        for j, (split, n) in enumerate({"train": n_train, "val": 20, "test": 20}.items()):
            texts = fixture_texts(domain, n, seed=10 * k + j, max_words=max_words)
            ids = [f"{domain}-{split}-{i}" for i in range(n)]
            pd.DataFrame({"id": ids, "source": "fixture", "text": texts}).to_parquet(d / f"{split}.parquet")


def write_tokenizer(path, vocab_size: int = 300) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    texts = [t for d in WORDS for t in fixture_texts(d, 50, seed=99)]
    tok.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(path)


@pytest.fixture(scope="session")
def lm_project(tmp_path_factory):
    """A project root with data/corpora/{general,medical,code} and data/tokenizer (read-only for tests)."""
    root = tmp_path_factory.mktemp("lm_project")
    write_corpora(root)
    write_tokenizer(root / "data" / "tokenizer")
    write_tokens(root)
    return root


def write_tokens(root) -> None:
    """The token stores of every corpus split under `root` with `data/tokenizer` (what the tokenize stage writes)."""
    from cptlaw.data.token_store import tokenize_corpora
    from cptlaw.data.tokenizer import load_tokenizer

    corpora = root / "data" / "corpora"
    domains = sorted(d.name for d in corpora.iterdir() if d.is_dir())
    tokenize_corpora(corpora, root / "data" / "tokens", load_tokenizer(root / "data" / "tokenizer"), domains,
                     ["train", "val", "test"], shard_docs=1000, workers=1, progress=False)  # fmt: skip
