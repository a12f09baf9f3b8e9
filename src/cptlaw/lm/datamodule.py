"""Packed training and named validation sets as a LightningDataModule.

The arrays are built once in the launching process (`from_corpora`) and handed to the module, so a
`ddp_spawn` run pickles ready arrays to its workers instead of re-tokenising in each. The CPT stage can pass
its own mixture array as `train`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from cptlaw.data.corpora import read_split
from cptlaw.lm.model import ModelError
from cptlaw.lm.packing import PackedDataset, encode_documents, pack


def read_texts(corpora_dir: str | Path, domain: str, split: str) -> pd.DataFrame:
    """`id, source, text` of one split (`cptlaw.data.corpora.read_split`), with the LM stages' error class."""
    path = Path(corpora_dir) / domain / f"{split}.parquet"
    if not path.is_file():
        raise ModelError(f"corpus split {path} does not exist (run the corpora stage, or check `domains`)")
    return read_split(corpora_dir, domain, split).reset_index(drop=True)


def shuffled_tokens(
    texts: Sequence[str], tokenizer: Any, n_tokens: int | None, seed: int
) -> list[np.ndarray]:
    """Encode documents in a seeded random order until `n_tokens` ids are collected (all if None).

    Shuffling before packing matters (design.md): in file order, one source becomes the whole set.
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
    texts = read_texts(corpora_dir, domain, split)["text"].tolist()
    if not texts:
        raise ModelError(f"corpus split {domain}/{split} is empty")
    want = None if n_tokens is None else int(n_tokens) + int(n_tokens) // seq_len + seq_len + 1
    packed = pack(shuffled_tokens(texts, tokenizer, want, seed), seq_len)
    if n_tokens is not None:
        packed = packed[: max(1, -(-int(n_tokens) // seq_len))]
    if len(packed) == 0:
        raise ModelError(f"corpus split {domain}/{split} has fewer than seq_len + 1 = {seq_len + 1} tokens")
    return packed


class LMDataModule(L.LightningDataModule):
    """Shuffled packed training rows + validation sets named like the domains (`val_loss_<name>`)."""

    def __init__(
        self,
        train: np.ndarray,
        val: Mapping[str, np.ndarray],
        *,
        batch_size: int,
        val_batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.train_array = train
        self.val_arrays = dict(val)
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.seed = int(seed)

    @classmethod
    def from_corpora(
        cls,
        corpora_dir: str | Path,
        tokenizer: Any,
        *,
        train_domain: str,
        val_domains: Sequence[str],
        seq_len: int,
        n_train_tokens: int | None,
        n_val_tokens: int | None,
        batch_size: int,
        val_batch_size: int | None = None,
        seed: int = 0,
    ) -> LMDataModule:
        """Pack `train_domain`'s train split and each of `val_domains`' val splits."""
        train = packed_split(
            corpora_dir, train_domain, "train", tokenizer, seq_len=seq_len, n_tokens=n_train_tokens, seed=seed
        )
        val = {
            d: packed_split(
                corpora_dir, d, "val", tokenizer, seq_len=seq_len, n_tokens=n_val_tokens, seed=seed
            )
            for d in dict.fromkeys(val_domains)
        }
        return cls(train, val, batch_size=batch_size, val_batch_size=val_batch_size, seed=seed)

    @property
    def val_names(self) -> list[str]:
        return list(self.val_arrays)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(
            PackedDataset(self.train_array), batch_size=self.batch_size, shuffle=True, generator=generator,
            drop_last=True,
        )  # fmt: skip

    def val_dataloader(self) -> list[torch.utils.data.DataLoader]:
        return [
            torch.utils.data.DataLoader(PackedDataset(a), batch_size=self.val_batch_size)
            for a in self.val_arrays.values()
        ]

    def val_batches(self, name: str) -> Iterator[torch.Tensor]:
        """Batches of one validation set, for `module.mean_token_loss` outside a Trainer."""
        yield from self.val_dataloader()[self.val_names.index(name)]
