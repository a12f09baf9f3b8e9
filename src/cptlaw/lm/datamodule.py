"""Packed training and named validation sets as a LightningDataModule.

Rows come from the memory-mapped token stores (`from_stores`: `cptlaw.data.packing.DocStream`s, cut from
the memory map as the loader asks; a `ddp_spawn` worker re-opens the store files instead of receiving the
data). A plain `(n, seq_len + 1)` array works too. The CPT stage serves its streamed mixture.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from cptlaw.data.mixture import CPTData
from cptlaw.data.packing import packed_split


class PackedDataset(torch.utils.data.Dataset):
    """Rows of a packed array, or of any 2-D row source (`DocStream`, `Mixture`: `shape`, `len`, `rows[i]`),
    as `LongTensor (seq_len + 1,)`; the default collate stacks them to `(B, seq_len + 1)`."""

    def __init__(self, packed: Any):
        if packed.ndim != 2:
            raise ValueError(f"packed array must be 2-D (n_seq, seq_len + 1), got shape {packed.shape}")
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.packed[i], dtype=np.int64))

    @property
    def n_tokens(self) -> int:
        """Target tokens in the dataset (`seq_len` per row)."""
        return int(self.packed.shape[0] * (self.packed.shape[1] - 1))


class LMDataModule(L.LightningDataModule):
    """Shuffled packed training rows + validation sets named like the domains (`val_loss_<name>`)."""

    def __init__(
        self,
        train: Any,
        val: Mapping[str, Any],
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
    def from_stores(
        cls,
        tokens_dir: str | Path,
        *,
        corpora_dir: str | Path | None,
        tokenizer_fp: str | None,
        train_domain: str,
        val_domains: Sequence[str],
        seq_len: int,
        n_train_tokens: int | None,
        n_val_tokens: int | None,
        batch_size: int,
        val_batch_size: int | None = None,
        seed: int = 0,
    ) -> LMDataModule:
        """Rows of `train_domain`'s train store and of each of `val_domains`' val stores (checked first)."""
        kw = {"seq_len": seq_len, "seed": seed, "tokenizer_fp": tokenizer_fp, "corpora_dir": corpora_dir}
        train = packed_split(tokens_dir, train_domain, "train", n_tokens=n_train_tokens, **kw)
        val = {
            d: packed_split(tokens_dir, d, "val", n_tokens=n_val_tokens, **kw)
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


class CPTDataModule(L.LightningDataModule):
    """Serves the fixed training order of a `CPTData` (no shuffling: the mixture already fixed it)."""

    def __init__(self, data: CPTData, batch_size: int, eval_batch_size: int = 16):
        super().__init__()
        self.data, self.batch_size, self.eval_batch_size = data, int(batch_size), int(eval_batch_size)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        train = PackedDataset(self.data.mixture)  # rows cut from the token stores as the loader asks
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # DDP: process k takes rows k, k + world, ... of the fixed order (no shuffling), so the processes'
            # batches of a step together are the rows one process would take (batch_size = global / world).
            sampler = torch.utils.data.DistributedSampler(train, shuffle=False, drop_last=False)
            return torch.utils.data.DataLoader(train, batch_size=self.batch_size, sampler=sampler)
        return torch.utils.data.DataLoader(train, batch_size=self.batch_size, shuffle=False)

    def eval_batches(self, which: str) -> list[torch.Tensor]:
        rows = {"domain": self.data.domain_test, "general": self.data.general_test}[which]
        t = torch.from_numpy(rows.astype(np.int64))
        return list(torch.split(t, self.eval_batch_size))
