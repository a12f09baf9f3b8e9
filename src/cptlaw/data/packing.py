"""Documents → token ids → fixed-length training sequences (numpy only; the torch Dataset is in `cptlaw.lm.datamodule`).

Documents are tokenized once, by the tokenize stage, into memory-mapped token stores
(`cptlaw.data.token_store`); `DocStream` cuts packed rows out of a store on demand.

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

from cptlaw.errors import CorpusError, MixtureError


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


class DocStream:
    """`n_rows` packed rows of `seq_len + 1` ids cut from the documents `order` of a token store, concatenated
    (EOS after each), read from the memory map on demand: the rows `pack(...)` of those documents gives,
    without materialising them.

    When the rows need more tokens than one pass over `order` holds, `on_short_data="repeat"` continues with
    further passes, pass e ≥ 1 being `rng.permutation(pass e − 1)` for `rng = default_rng(repeat_seed)`
    drawn in sequence; `"error"` raises `MixtureError`. Memory: the order and the cumulative document ends
    of at most two passes (8 bytes per selected document each), whatever the number of rows.
    """

    def __init__(
        self, store: Any, order: np.ndarray, seq_len: int, n_rows: int, *, repeat_seed: Any = None,
        on_short_data: str = "error", what: str = "the stream",
    ) -> None:  # fmt: skip
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.store, self.order, self.width = store, np.asarray(order, np.int64), int(seq_len) + 1
        self.n_rows, self.repeat_seed = int(n_rows), repeat_seed
        self._lengths = store.lengths
        self._passes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._rng: tuple[int, Any, np.ndarray] | None = None
        ends = np.cumsum(self._lengths[self.order]) if len(self.order) else np.zeros(0, np.int64)
        self._passes[0] = (self.order, ends)
        self.per_pass = int(ends[-1]) if len(ends) else 0
        need = self.n_rows * self.width
        if need > self.per_pass and self.n_rows > 0 and (on_short_data != "repeat" or self.per_pass == 0):
            raise MixtureError(
                f"{what} needs {need} tokens but holds {self.per_pass} ({len(self.order)} documents): lower "
                f"`cpt.n_tokens` or `cpt.r`, or set `cpt.on_short_data=repeat`"
            )
        if self.n_rows == 0:
            self.used, self.epochs = np.zeros(0, np.int64), 0.0
        elif need <= self.per_pass:  # the documents of the first pass that the rows reach
            self.used = self.order[: int(np.searchsorted(ends, need, side="left")) + 1]
            self.epochs = len(self.used) / len(self.order)
        else:
            self.used, self.epochs = self.order, need / self.per_pass

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.width)

    ndim = 2

    def __len__(self) -> int:
        return self.n_rows

    def _pass(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e in self._passes:
            return self._passes[e]
        if self._rng is None or self._rng[0] >= e:  # restart the sequence of reshuffles
            self._rng = (0, np.random.default_rng(self.repeat_seed), self.order)
        k, rng, order = self._rng
        while k < e:
            order, k = rng.permutation(order), k + 1
        self._rng = (k, rng, order)
        self._passes = {0: self._passes[0], e: (order, np.cumsum(self._lengths[order]))}
        return self._passes[e]

    def tokens(self, p: int, q: int) -> np.ndarray:
        """Ids at positions [p, q) of the (repeated) concatenation, as int32."""
        out = np.empty(q - p, np.int32)
        filled, offsets = 0, self.store.offsets
        while p < q:
            e, within = divmod(p, self.per_pass)
            order, ends = self._pass(e)
            k = int(np.searchsorted(ends, within, side="right"))
            doc, end = int(order[k]), int(ends[k])
            n = min(end - within, q - p)
            a = int(offsets[doc]) + int(self._lengths[doc]) - (end - within)
            out[filled : filled + n] = self.store.read(a, a + n)
            filled, p = filled + n, p + n
        return out

    def __getitem__(self, j: int) -> np.ndarray:
        j = int(j)
        if not 0 <= j < self.n_rows:
            raise IndexError(j)
        return self.tokens(j * self.width, (j + 1) * self.width)

    def rows(self, j0: int = 0, j1: int | None = None) -> np.ndarray:
        """Rows [j0, j1) as one `(n, seq_len + 1)` int32 array."""
        j1 = self.n_rows if j1 is None else min(int(j1), self.n_rows)
        return self.tokens(j0 * self.width, j1 * self.width).reshape(-1, self.width)


def packed_split(
    tokens_dir: str | Path,
    domain: str,
    split: str,
    *,
    seq_len: int,
    n_tokens: int | None,
    seed: int,
    tokenizer_fp: str | None = None,
    corpora_dir: str | Path | None = None,
) -> DocStream:
    """Rows of a shuffled split's store (documents in `default_rng(seed)` order, no repeats): about `n_tokens`
    target tokens (all the split holds when None or when it holds fewer). The store is checked first
    (`token_store.open_store`, against `corpora_dir`'s split when given)."""
    from cptlaw.data.token_store import open_store

    corpus = Path(corpora_dir) / domain / f"{split}.parquet" if corpora_dir is not None else None
    store = open_store(Path(tokens_dir) / domain / split, tokenizer_fp=tokenizer_fp, corpus=corpus)
    if store.n_docs == 0:
        raise CorpusError(f"corpus split {domain}/{split} is empty")
    have = store.n_tokens // (seq_len + 1)
    want = have if n_tokens is None else min(have, max(1, -(-int(n_tokens) // seq_len)))
    if want == 0:
        raise CorpusError(f"corpus split {domain}/{split} has fewer than seq_len + 1 = {seq_len + 1} tokens")
    return DocStream(store, np.random.default_rng(seed).permutation(store.n_docs), seq_len, want)
