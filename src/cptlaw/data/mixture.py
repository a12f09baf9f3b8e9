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

Everything is index arithmetic over the token stores (`cptlaw.data.token_store`): a regime selects document
positions, each stream is a `packing.DocStream` over a seeded order of them, and row i of the run is
looked up (`Mixture.source`) and cut from the memory map when the data loader asks for it. Nothing is
tokenized and no training array exists: memory is the selected documents' order and offsets, whatever D.
The rows are the same as packing the tokenized documents in that order would give (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cptlaw.data.packing import DocStream
from cptlaw.data.subsets import PplStats, Regime, check_aligned, ppl_stats, read_scores, select
from cptlaw.data.token_store import TokenStore, open_store
from cptlaw.errors import MixtureError


def interleave(n_domain: int, n_general: int) -> np.ndarray:
    """Boolean `is_domain` per row: the two streams spread evenly (each row at its fractional position
    `(k + 0.5) / n`, domain first on ties). `Mixture.source` gives the same answer for one row in O(log n)."""
    keys = np.concatenate(
        [(np.arange(n_domain) + 0.5) / max(n_domain, 1), (np.arange(n_general) + 0.5) / max(n_general, 1)]
    )
    flags = np.concatenate([np.ones(n_domain, bool), np.zeros(n_general, bool)])
    return flags[np.argsort(keys, kind="stable")]


def domain_row_position(k: int, n_domain: int, n_general: int) -> int:
    """Row of the run that domain row k lands on in `interleave` order: k plus the general rows whose key
    `(m + 0.5) / n_general` is strictly below `(k + 0.5) / n_domain` (exact integer arithmetic)."""
    num, den = (2 * k + 1) * n_general - n_domain, 2 * n_domain
    return k + min(max(-(-num // den), 0), n_general)


def row_source(i: int, n_domain: int, n_general: int) -> tuple[bool, int]:
    """(is_domain, index within its stream) of row i of the interleaved run, by bisection."""
    lo, hi = 0, n_domain  # number of domain rows placed before row i
    while lo < hi:
        mid = (lo + hi) // 2
        if domain_row_position(mid, n_domain, n_general) < i:
            lo = mid + 1
        else:
            hi = mid
    if lo < n_domain and domain_row_position(lo, n_domain, n_general) == i:
        return True, lo
    return False, i - lo


def eval_rows(store: TokenStore, seq_len: int, max_sequences: int, *, what: str) -> np.ndarray:
    """The first `max_sequences` packed rows of a store in file order (a fixed held-out set; all of it when
    it holds fewer)."""
    n = min(int(max_sequences), store.n_tokens // (seq_len + 1))
    if n < 1:
        raise MixtureError(f"{what} holds less than one sequence of {seq_len + 1} tokens")
    k = int(np.searchsorted(store.offsets, n * (seq_len + 1), side="left"))  # the documents the rows reach
    return DocStream(store, np.arange(min(k, store.n_docs)), seq_len, n).rows()


@dataclass
class Mixture:
    """The training rows of one run (streamed: `mixture[i]` is row i), which are domain rows, and the numbers
    the run logs."""

    domain: DocStream
    general: DocStream
    stats: PplStats  # of the domain documents actually trained on
    domain_epochs: float  # passes over the domain subset (< 1: the fraction of its documents used)
    general_epochs: float
    warnings: list[str] = field(default_factory=list)

    @property
    def seq_len(self) -> int:
        return self.domain.width - 1

    @property
    def n_seq(self) -> int:
        return self.domain.n_rows + self.general.n_rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_seq, self.seq_len + 1)

    ndim = 2

    def __len__(self) -> int:
        return self.n_seq

    def source(self, i: int) -> tuple[bool, int]:
        return row_source(int(i), self.domain.n_rows, self.general.n_rows)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= int(i) < self.n_seq:
            raise IndexError(i)
        is_dom, j = self.source(i)
        return (self.domain if is_dom else self.general)[j]

    @property
    def is_domain(self) -> np.ndarray:
        """`(n_seq,)` bool, materialised (for tests and small runs; training uses `source`)."""
        return interleave(self.domain.n_rows, self.general.n_rows)

    def rows(self) -> np.ndarray:
        """Every row in training order as one array (tests and small runs only: 4 bytes per token)."""
        out = np.empty(self.shape, np.int32)
        flags = self.is_domain
        out[flags], out[~flags] = self.domain.rows(), self.general.rows()
        return out

    @property
    def domain_tokens(self) -> int:
        return self.domain.n_rows * self.seq_len

    @property
    def general_tokens(self) -> int:
        return self.general.n_rows * self.seq_len

    @property
    def n_tokens(self) -> int:
        return self.n_seq * self.seq_len


def build_mixture(
    *,
    domain_store: TokenStore,
    domain_pos: np.ndarray,
    domain_ppl: np.ndarray | None,
    general_store: TokenStore,
    n_tokens: int,
    r: float,
    seq_len: int,
    seed: int,
    on_short_data: str = "repeat",
) -> Mixture:
    """Mix the domain subset (documents `domain_pos` of `domain_store`) with the general store at share `r`."""
    if not 0.0 <= r <= 1.0:
        raise MixtureError(f"`cpt.r` must be in [0, 1], got {r}")
    if on_short_data not in ("repeat", "error"):
        raise MixtureError(f"`cpt.on_short_data` must be repeat or error, got {on_short_data}")
    n_seq = int(n_tokens) // int(seq_len)
    if n_seq < 1:
        raise MixtureError(f"`cpt.n_tokens` must be at least one sequence ({seq_len} tokens), got {n_tokens}")
    n_domain = int(round(r * n_seq))
    dom = DocStream(
        domain_store, np.random.default_rng([seed, 1]).permutation(np.asarray(domain_pos)), seq_len, n_domain,
        repeat_seed=[seed, 11], on_short_data=on_short_data, what="the domain subset",
    )  # fmt: skip
    gen = DocStream(
        general_store, np.random.default_rng([seed, 2]).permutation(general_store.n_docs), seq_len,
        n_seq - n_domain, repeat_seed=[seed, 12], on_short_data=on_short_data, what="the general train split",
    )  # fmt: skip
    # μ, σ of the documents trained on; r = 0 trains on none of them, so report the subset it draws from.
    pos = dom.used if len(dom.used) else np.asarray(domain_pos)
    stats = ppl_stats(domain_ppl[pos]) if domain_ppl is not None else ppl_stats(np.zeros(0))
    warnings = [
        f"{name} repeated: {epochs:.2f} epochs over its documents"
        for name, epochs in (("domain subset", dom.epochs), ("general corpus", gen.epochs))
        if epochs > 1.0
    ]
    return Mixture(dom, gen, stats, dom.epochs, gen.epochs, warnings)


@dataclass
class CPTData:
    """A run's mixture plus its fixed held-out test rows."""

    mixture: Mixture
    domain_test: np.ndarray
    general_test: np.ndarray


def cpt_stores(
    tokens_dir: str | Path, corpora_dir: str | Path, domain: str, tokenizer_fp: str | None
) -> dict[tuple[str, str], TokenStore]:
    """The four stores a CPT run reads (domain and general, train and test), each checked against its corpus
    split and the run's tokenizer: one-line `StoreError` before any training."""
    return {
        (d, s): open_store(Path(tokens_dir) / d / s, tokenizer_fp=tokenizer_fp,
                           corpus=Path(corpora_dir) / d / f"{s}.parquet")
        for d in (domain, "general") for s in ("train", "test")
    }  # fmt: skip


def load_cpt_data(
    tokens_dir: str | Path,
    corpora_dir: str | Path,
    domain: str,
    regime: Regime,
    scores_path: str | Path | None,
    *,
    tokenizer_fp: str | None,
    n_tokens: int,
    r: float,
    seq_len: int,
    seed: int,
    on_short_data: str,
    eval_sequences: int,
) -> CPTData:
    """Everything a CPT run reads from disk: the regime's subset of the `<domain>/train` store (ranked by the
    score file, which must be aligned with it), mixed with `general/train`, plus the fixed test rows."""
    stores = cpt_stores(tokens_dir, corpora_dir, domain, tokenizer_fp)
    dom_train = stores[(domain, "train")]
    scores = read_scores(scores_path) if scores_path else None
    if scores is None and regime.ids_path is None:  # no sample ids needed: positions only
        pos = select(regime, pd.Series(range(dom_train.n_docs)), None)
    else:
        ids = pd.Series(dom_train.ids())
        if scores is not None:
            check_aligned(scores, ids, scores_path)
        pos = select(regime, ids, scores)
    mixture = build_mixture(
        domain_store=dom_train, domain_pos=pos, domain_ppl=None if scores is None else scores["ppl"].to_numpy(float),
        general_store=stores[("general", "train")], n_tokens=n_tokens, r=r, seq_len=seq_len, seed=seed,
        on_short_data=on_short_data,
    )  # fmt: skip
    tests = [eval_rows(stores[(d, "test")], seq_len, eval_sequences, what=f"the {d} test split")
             for d in (domain, "general")]  # fmt: skip
    return CPTData(mixture, *tests)
