"""The training stream of one CPT run: a domain subset mixed with the general corpus at domain share r.

Budget and share (units: *target tokens*; a packed row of `seq_len + 1` ids trains `seq_len` of them):
- the run trains `n_seq = n_tokens // seq_len` rows; `n_domain = round(r · n_seq)` rows come from the domain
  subset and the rest from the general train split, so the domain share is exact to within one sequence
  (|domain_tokens − r·D| ≤ seq_len / 2);
- domain and general rows are interleaved evenly (the domain count of every prefix is within one row of
  r × prefix), so every intermediate evaluation point of the run sees the same r;
- each stream packs whole documents in a seeded random order (shuffled documents: in file order one source would dominate); the general
  stream's order does not depend on r, so runs at different r share their general text.

Short data: when a stream needs more tokens than its documents hold, `on_short_data="repeat"` reshuffles
and repeats the documents (epochs > 1, reported as `domain_epochs` / `general_epochs` and a warning the run
records as the tag `cptlaw.warning`); `"error"` raises `MixtureError` before any training.

Test sets are fixed: the first `max_sequences` packed rows of each test split in file order, whatever the
seed, so every run of a study is evaluated on the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cptlaw.data import corpora
from cptlaw.data.packing import encode_documents, pack
from cptlaw.data.subsets import PplStats, Regime, check_aligned, ppl_stats, read_scores, select
from cptlaw.errors import MixtureError


@dataclass
class Stream:
    """Packed rows of one source, the positions of the documents they use, and epochs over the source."""

    rows: np.ndarray
    used: np.ndarray
    epochs: float


def take_sequences(
    texts: Sequence[str],
    order: np.ndarray,
    tokenizer: Any,
    n_seq: int,
    seq_len: int,
    *,
    rng: np.random.Generator,
    on_short_data: str,
    what: str,
    chunk: int = 64,
) -> Stream:
    """The first `n_seq` packed rows of the documents `texts[order]`, encoding only as many as needed."""
    width = seq_len + 1
    if n_seq <= 0:
        return Stream(np.zeros((0, width), np.int32), np.zeros(0, np.int64), 0.0)
    need = n_seq * width
    cache: dict[int, np.ndarray] = {}
    arrays: list[np.ndarray] = []
    used: list[int] = []
    total, epoch, start = 0, 0, 0
    while total < need:
        if start >= len(order):  # one pass over the source is done
            available = sum(len(a) for a in cache.values())
            if on_short_data != "repeat" or available == 0:
                raise MixtureError(
                    f"{what} needs {need} tokens but holds {available} ({len(order)} documents): lower "
                    f"`cpt.n_tokens` or `cpt.r`, or set `cpt.on_short_data=repeat`"
                )
            order, start, epoch = rng.permutation(order), 0, epoch + 1
        batch = [int(p) for p in order[start : start + chunk]]
        todo = [p for p in batch if p not in cache]
        for p, ids in zip(todo, encode_documents([texts[p] for p in todo], tokenizer), strict=True):
            cache[p] = ids
        for p in batch:
            if total >= need:
                break
            arrays.append(cache[p])
            total += len(cache[p])
            if epoch == 0:
                used.append(p)
        start += chunk
    rows = pack(arrays, seq_len)[:n_seq]
    # passes over the source: the fraction of its documents used, or tokens needed / tokens held if repeated
    epochs = len(used) / len(order) if epoch == 0 else need / sum(len(a) for a in cache.values())
    return Stream(rows, np.asarray(used, np.int64), float(epochs))


def interleave(n_domain: int, n_general: int) -> np.ndarray:
    """Boolean `is_domain` per row: the two streams spread evenly (each row at its fractional position)."""
    keys = np.concatenate(
        [(np.arange(n_domain) + 0.5) / max(n_domain, 1), (np.arange(n_general) + 0.5) / max(n_general, 1)]
    )
    flags = np.concatenate([np.ones(n_domain, bool), np.zeros(n_general, bool)])
    return flags[np.argsort(keys, kind="stable")]


def eval_rows(
    texts: Sequence[str], tokenizer: Any, seq_len: int, max_sequences: int, *, what: str
) -> np.ndarray:
    """The first `max_sequences` packed rows of `texts` in file order (a fixed held-out set)."""
    rng = np.random.default_rng(0)  # unused: file order, no repeats
    try:
        stream = take_sequences(
            texts, np.arange(len(texts)), tokenizer, max_sequences, seq_len,
            rng=rng, on_short_data="error", what=what,
        )  # fmt: skip
        return stream.rows
    except MixtureError:  # a small test split: use all of it
        rows = pack(encode_documents(list(texts), tokenizer), seq_len)
        if len(rows) == 0:
            raise MixtureError(f"{what} holds less than one sequence of {seq_len + 1} tokens") from None
        return rows


@dataclass
class Mixture:
    """The training rows of one run, which of them are domain rows, and the numbers the run logs."""

    train: np.ndarray  # (n_seq, seq_len + 1) int32, in training order
    is_domain: np.ndarray  # (n_seq,) bool
    stats: PplStats  # of the domain documents actually trained on
    domain_epochs: float  # passes over the domain subset (< 1: the fraction of its documents used)
    general_epochs: float
    warnings: list[str] = field(default_factory=list)

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1] - 1)

    @property
    def domain_tokens(self) -> int:
        return int(self.is_domain.sum()) * self.seq_len

    @property
    def general_tokens(self) -> int:
        return int((~self.is_domain).sum()) * self.seq_len

    @property
    def n_tokens(self) -> int:
        return int(len(self.train)) * self.seq_len


def build_mixture(
    *,
    domain_texts: Sequence[str],
    domain_pos: np.ndarray,
    domain_ppl: np.ndarray | None,
    general_texts: Sequence[str],
    tokenizer: Any,
    n_tokens: int,
    r: float,
    seq_len: int,
    seed: int,
    on_short_data: str = "repeat",
) -> Mixture:
    """Mix the domain subset (`domain_texts[domain_pos]`) with the general texts at share `r` (module doc)."""
    if not 0.0 <= r <= 1.0:
        raise MixtureError(f"`cpt.r` must be in [0, 1], got {r}")
    if on_short_data not in ("repeat", "error"):
        raise MixtureError(f"`cpt.on_short_data` must be repeat or error, got {on_short_data}")
    n_seq = int(n_tokens) // int(seq_len)
    if n_seq < 1:
        raise MixtureError(f"`cpt.n_tokens` must be at least one sequence ({seq_len} tokens), got {n_tokens}")
    n_domain = int(round(r * n_seq))
    n_general = n_seq - n_domain
    dom = take_sequences(
        domain_texts, np.random.default_rng([seed, 1]).permutation(domain_pos), tokenizer, n_domain, seq_len,
        rng=np.random.default_rng([seed, 11]), on_short_data=on_short_data, what="the domain subset",
    )  # fmt: skip
    gen = take_sequences(
        general_texts, np.random.default_rng([seed, 2]).permutation(len(general_texts)), tokenizer, n_general,
        seq_len, rng=np.random.default_rng([seed, 12]), on_short_data=on_short_data, what="the general train split",
    )  # fmt: skip
    is_domain = interleave(n_domain, n_general)
    train = np.empty((n_seq, seq_len + 1), np.int32)
    train[is_domain] = dom.rows
    train[~is_domain] = gen.rows
    # μ, σ of the documents trained on; r = 0 trains on none of them, so report the subset it draws from.
    pos = dom.used if len(dom.used) else np.asarray(domain_pos)
    stats = ppl_stats(domain_ppl[pos]) if domain_ppl is not None else ppl_stats(np.zeros(0))
    warnings = [
        f"{name} repeated: {epochs:.2f} epochs over its documents"
        for name, epochs in (("domain subset", dom.epochs), ("general corpus", gen.epochs))
        if epochs > 1.0
    ]
    return Mixture(train, is_domain, stats, dom.epochs, gen.epochs, warnings)


@dataclass
class CPTData:
    """A run's mixture plus its fixed held-out test rows."""

    mixture: Mixture
    domain_test: np.ndarray
    general_test: np.ndarray


def load_cpt_data(
    corpora_dir: str | Path,
    domain: str,
    regime: Regime,
    scores_path: str | Path | None,
    tokenizer: Any,
    *,
    n_tokens: int,
    r: float,
    seq_len: int,
    seed: int,
    on_short_data: str,
    eval_sequences: int,
) -> CPTData:
    """Everything a CPT run reads from disk: the regime's subset of `<domain>/train` (ranked by the score file,
    which must be aligned with it), mixed with `general/train`, plus the fixed domain and general test rows."""
    dom_train = corpora.read_split(corpora_dir, domain, "train")
    scores = read_scores(scores_path) if scores_path else None
    if scores is not None:
        check_aligned(scores, dom_train["id"], scores_path)
    mixture = build_mixture(
        domain_texts=dom_train["text"].tolist(), domain_pos=select(regime, dom_train["id"], scores),
        domain_ppl=None if scores is None else scores["ppl"].to_numpy(float),
        general_texts=corpora.read_split(corpora_dir, "general", "train")["text"].tolist(), tokenizer=tokenizer,
        n_tokens=n_tokens, r=r, seq_len=seq_len, seed=seed, on_short_data=on_short_data,
    )  # fmt: skip
    tests = [
        eval_rows(corpora.read_split(corpora_dir, d, "test")["text"].tolist(), tokenizer, seq_len, eval_sequences,
                  what=f"the {d} test split")
        for d in (domain, "general")
    ]  # fmt: skip
    return CPTData(mixture, *tests)
