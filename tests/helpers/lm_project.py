"""The lm fixture project (tiny corpora parquet files and a BPE tokenizer built here, no downloads; the
`lm_project` fixture of tests/conftest.py) and the pretrain-stage config composed on it."""

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR

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


TINY = [
    "+model.sizes.a={d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32}",
    "+model.sizes.b={d_model: 32, n_layers: 1, n_heads: 2, d_ff: 64}",
    "model.train_sizes=[a, b]",
    "domains=[medical, code]",
    "pretrain.seq_len=32",
    "pretrain.batch_size=4",
    "pretrain.n_tokens=1280",
    "pretrain.val_tokens=256",
    "pretrain.eval_every=5",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=2",
]


def pretrain_cfg(root, overrides=()):
    """The smoke config with two tiny sizes `a`, `b` pre-trained on the fixture project at `root`."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["profile=smoke", f"paths.root={root}", *TINY, *overrides])


def write_tokens(root) -> None:
    """The token stores of every corpus split under `root` with `data/tokenizer` (what the tokenize stage writes)."""
    from cptlaw.data.token_store import tokenize_corpora
    from cptlaw.data.tokenizer import load_tokenizer

    corpora = root / "data" / "corpora"
    domains = sorted(d.name for d in corpora.iterdir() if d.is_dir())
    tokenize_corpora(corpora, root / "data" / "tokens", load_tokenizer(root / "data" / "tokenizer"), domains,
                     ["train", "val", "test"], shard_docs=1000, workers=1, progress=False)  # fmt: skip
