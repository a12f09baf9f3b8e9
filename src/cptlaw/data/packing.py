"""Documents → token ids → fixed-length training sequences (numpy only; the torch Dataset is in `cptlaw.lm.datamodule`).

Packing (as in GPT-2/nanoGPT pre-training): each document is encoded, an EOS id is appended, all documents
are concatenated into one stream, and the stream is cut into non-overlapping rows of `seq_len + 1` ids.
A row is one training example: inputs `row[:-1]`, next-token targets `row[1:]`, so every row trains
exactly `seq_len` target tokens. The tail that does not fill a row is dropped. Shuffle documents *before*
packing: in file order, concatenated sources silently turn one source into the whole training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cptlaw.data.corpora import read_split
from cptlaw.errors import CorpusError


def encode_documents(texts: Sequence[str], tokenizer: Any, *, batch_size: int = 1024) -> list[np.ndarray]:
    """Token ids (int32) of each text with the tokenizer's EOS id appended; no BOS, no other special tokens."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError("tokenizer has no eos_token: documents cannot be separated when packing")
    out: list[np.ndarray] = []
    texts = list(texts)
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(texts[start : start + batch_size], add_special_tokens=False)["input_ids"]
        out.extend(np.asarray([*row, eos], dtype=np.int32) for row in ids)
    return out


def pack(arrays: Sequence[np.ndarray], seq_len: int) -> np.ndarray:
    """Concatenate and cut into `(n_seq, seq_len + 1)` int32 rows (the remainder is dropped)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    stream = np.concatenate(arrays).astype(np.int32, copy=False) if len(arrays) else np.zeros(0, np.int32)
    width = seq_len + 1
    n_seq = len(stream) // width
    return stream[: n_seq * width].reshape(n_seq, width)


def shuffled_tokens(
    texts: Sequence[str], tokenizer: Any, n_tokens: int | None, seed: int
) -> list[np.ndarray]:
    """Encode documents in a seeded random order until `n_tokens` ids are collected (all if None).

    Shuffling before packing matters: in file order, one source becomes the whole set.
    """
    order = np.random.default_rng(seed).permutation(len(texts))
    out: list[np.ndarray] = []
    total, chunk = 0, 512
    for start in range(0, len(order), chunk):
        batch = [texts[i] for i in order[start : start + chunk]]
        for ids in encode_documents(batch, tokenizer):
            out.append(ids)
            total += len(ids)
        if n_tokens is not None and total >= n_tokens:
            break
    return out


def packed_split(
    corpora_dir: str | Path,
    domain: str,
    split: str,
    tokenizer: Any,
    *,
    seq_len: int,
    n_tokens: int | None,
    seed: int,
) -> np.ndarray:
    """`(n_seq, seq_len + 1)` rows from a shuffled split, about `n_tokens` target tokens (all if None)."""
    texts = read_split(corpora_dir, domain, split)["text"].tolist()
    if not texts:
        raise CorpusError(f"corpus split {domain}/{split} is empty")
    want = None if n_tokens is None else int(n_tokens) + int(n_tokens) // seq_len + seq_len + 1
    packed = pack(shuffled_tokens(texts, tokenizer, want, seed), seq_len)
    if n_tokens is not None:
        packed = packed[: max(1, -(-int(n_tokens) // seq_len))]
    if len(packed) == 0:
        raise CorpusError(f"corpus split {domain}/{split} has fewer than seq_len + 1 = {seq_len + 1} tokens")
    return packed
