"""Documents → token ids → fixed-length training sequences.

Packing (as in GPT-2/nanoGPT pre-training): each document is encoded, an EOS id is appended, all documents
are concatenated into one stream, and the stream is cut into non-overlapping rows of `seq_len + 1` ids.
A row is one training example: inputs `row[:-1]`, next-token targets `row[1:]`, so every row trains
exactly `seq_len` target tokens. The tail that does not fill a row is dropped. Shuffle documents *before*
packing (design.md: file order silently turns one source into the whole training set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


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


class PackedDataset(torch.utils.data.Dataset):
    """Rows of a packed array as `LongTensor (seq_len + 1,)`; the default collate stacks them to `(B, seq_len + 1)`."""

    def __init__(self, packed: np.ndarray):
        if packed.ndim != 2:
            raise ValueError(f"packed array must be 2-D (n_seq, seq_len + 1), got shape {packed.shape}")
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.packed[i].astype(np.int64))

    @property
    def n_tokens(self) -> int:
        """Target tokens in the dataset (`seq_len` per row)."""
        return int(self.packed.shape[0] * (self.packed.shape[1] - 1))
