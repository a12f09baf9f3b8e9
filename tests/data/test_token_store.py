"""Token stores: written once (parallel, resumable, streamed), read as memory maps; the CPT mixture over them
is the old per-run packing exactly (shares, interleaving, determinism, repeats); bad stores are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cptlaw.data import token_store as ts
from cptlaw.data.mixture import build_mixture, domain_row_position, eval_rows, interleave, row_source
from cptlaw.data.packing import DocStream, encode_documents, pack, packed_split
from cptlaw.errors import BadInput, StoreError

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
)
SEQ = 16


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1} | {w: i + 2 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


def _write_split(root: Path, domain: str, split: str, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(2, 30))) for _ in range(n)]
    path = root / "corpora" / domain / f"{split}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"id": [f"{domain}-{split}-{i}" for i in range(n)], "source": "t", "text": texts}
    ).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def tok():
    return _tokenizer()


@pytest.fixture
def corpus(tmp_path):
    for domain, seed in (("general", 1), ("medical", 2)):
        for split, n in (("train", 230), ("test", 40)):
            _write_split(tmp_path, domain, split, n, seed + len(split))
    return tmp_path


def _tokenize(root: Path, tok, *, domains=("general", "medical"), workers=1, shard_docs=50, out="tokens"):
    return ts.tokenize_corpora(root / "corpora", root / out, tok, list(domains), ["train", "test"],
                               shard_docs=shard_docs, workers=workers, progress=False)  # fmt: skip


def _texts(root: Path, domain: str, split: str = "train") -> list[str]:
    return pd.read_parquet(root / "corpora" / domain / f"{split}.parquet")["text"].tolist()


# ------------------------------------------------------------------------------------------ the store


def test_store_holds_each_document_with_eos_in_corpus_order(corpus, tok):
    _tokenize(corpus, tok)
    store = ts.open_store(corpus / "tokens" / "medical" / "train", tokenizer_fp=ts.tokenizer_fingerprint(tok),
                          corpus=corpus / "corpora" / "medical" / "train.parquet")  # fmt: skip
    texts = _texts(corpus, "medical")
    ref = encode_documents(texts, tok)
    assert store.n_docs == len(texts) and store.tokens.dtype == np.uint16
    assert all((store.doc(i) == ref[i]).all() for i in range(len(texts)))
    assert store.ids() == pd.read_parquet(corpus / "corpora" / "medical" / "train.parquet")["id"].tolist()
    assert (
        store.n_tokens
        == sum(len(r) for r in ref)
        == (corpus / "tokens/medical/train/tokens.bin").stat().st_size // 2
    )


def test_dtype_follows_the_vocabulary(tmp_path):
    assert ts.dtype_for(4096) == np.uint16 and ts.dtype_for(65536) == np.uint16
    assert ts.dtype_for(65537) == np.uint32 and ts.dtype_for(151_000) == np.uint32
    w = ts.StoreWriter(tmp_path / "big", ts.dtype_for(151_000), {"eos_id": 0})
    w.add(np.array([150_999, 70_000, 0], np.int64), np.array([3]), ["a"])
    store = ts.open_store(w.out) if w.finish() else None
    assert store.tokens.dtype == np.uint32 and store.doc(0).tolist() == [150_999, 70_000, 0]


def test_parallel_workers_write_the_same_store(corpus, tok):
    _tokenize(corpus, tok, domains=["general"], workers=1, out="one")
    _tokenize(corpus, tok, domains=["general"], workers=2, out="two")
    for name in (ts.TOKENS, ts.OFFSETS):
        assert (corpus / "one/general/train" / name).read_bytes() == (
            corpus / "two/general/train" / name
        ).read_bytes()


def test_interrupted_tokenization_resumes_from_finished_shards(corpus, tok):
    path = corpus / "corpora" / "general" / "train.parquet"
    out = corpus / "tokens" / "general" / "train"
    src = ts.source_record(path)

    def crash_after(k):
        for i, shard in enumerate(ts.parquet_shards(path, 50)):
            if i == k:
                raise KeyboardInterrupt("killed")
            yield shard

    with pytest.raises(KeyboardInterrupt):
        ts.tokenize_split(crash_after(3), out, tok, source=src)
    with pytest.raises(
        StoreError, match=r"^token store .* is incomplete .*tokenize stage.*finished shards are kept$"
    ):
        ts.open_store(out)
    res = ts.tokenize_split(ts.parquet_shards(path, 50), out, tok, source=src)
    assert (res.resumed, res.encoded) == (3, 2)  # 230 documents = 5 shards of 50: 3 kept, 2 encoded
    whole = ts.tokenize_split(ts.parquet_shards(path, 50), corpus / "whole", tok, source=src)
    assert (
        whole.encoded == 5 and (out / ts.TOKENS).read_bytes() == (corpus / "whole" / ts.TOKENS).read_bytes()
    )
    assert not (out.parent / ".shards").exists() or not any((out.parent / ".shards").iterdir())


def test_current_store_is_skipped_and_a_stale_one_rebuilt(corpus, tok, capsys):
    _tokenize(corpus, tok)
    mtime = (corpus / "tokens/medical/train" / ts.TOKENS).stat().st_mtime_ns
    _tokenize(corpus, tok)
    assert "medical/train: up to date" in capsys.readouterr().out
    assert (corpus / "tokens/medical/train" / ts.TOKENS).stat().st_mtime_ns == mtime
    _write_split(corpus, "medical", "train", 100, seed=9)
    metrics = _tokenize(corpus, tok)
    assert metrics["medical"]["train"]["documents"] == 100


# ------------------------------------------------------------------------------------------ bad stores


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and isinstance(exc, BadInput)
    return text


def test_missing_truncated_foreign_and_stale_stores_are_one_line_errors(corpus, tok):
    _tokenize(corpus, tok)
    store = corpus / "tokens" / "medical" / "train"
    split = corpus / "corpora" / "medical" / "train.parquet"
    fp = ts.tokenizer_fingerprint(tok)
    with pytest.raises(
        StoreError, match=r"^token store .*nope/train does not exist: re-run the tokenize stage"
    ) as e:
        ts.open_store(corpus / "tokens" / "nope" / "train")
    _one_line(e.value)
    other = _tokenizer()
    other.add_tokens(["omega"])
    with pytest.raises(
        StoreError, match=r"^token store .*medical/train was built with another tokenizer .*tokenize stage"
    ) as e:
        ts.open_store(store, tokenizer_fp=ts.tokenizer_fingerprint(other))
    _one_line(e.value)
    pd.read_parquet(split).iloc[:-1].to_parquet(split)
    with pytest.raises(
        StoreError, match=r"^token store .*medical/train is out of date with its corpus .*tokenize stage"
    ) as e:
        ts.open_store(store, tokenizer_fp=fp, corpus=split)
    _one_line(e.value)
    data = (store / ts.TOKENS).read_bytes()
    (store / ts.TOKENS).write_bytes(data[: len(data) // 2])
    with pytest.raises(
        StoreError,
        match=r"^token store .*medical/train is truncated \(tokens.bin holds .* bytes\): re-run the tokenize stage",
    ) as e:
        ts.open_store(store)
    _one_line(e.value)


def test_store_truncated_after_it_was_opened_stops_the_read_in_one_line(corpus, tok):
    _tokenize(corpus, tok)
    path = corpus / "tokens" / "medical" / "train"
    store = ts.open_store(path)
    stream = DocStream(store, np.arange(store.n_docs), SEQ, store.n_tokens // (SEQ + 1))
    assert stream[0].shape == (SEQ + 1,)
    data = (path / ts.TOKENS).read_bytes()
    (path / ts.TOKENS).write_bytes(data[: len(data) // 2])  # e.g. a re-run of the stage killed mid-copy
    with pytest.raises(StoreError, match=r"^token store .*medical/train is truncated .*tokenize stage") as e:
        stream.rows()
    _one_line(e.value)


# ------------------------------------------------------------------------------------------ streaming rows


def _reference_rows(texts, tok, order, n_rows, repeat_seed):
    """The pre-store implementation: encode documents in `order` (reshuffled passes when short), pack."""
    docs, need, rng, order = [], n_rows * (SEQ + 1), np.random.default_rng(repeat_seed), np.asarray(order)
    while sum(len(d) for d in docs) < need:
        docs += encode_documents([texts[i] for i in order], tok)
        order = rng.permutation(order)
    return pack(docs, SEQ)[:n_rows]


@pytest.mark.parametrize("n_rows", [1, 7, 40, 333])  # 333 rows repeat the 60-document subset several times
def test_doc_stream_rows_equal_packing_the_tokenized_documents(corpus, tok, n_rows):
    _tokenize(corpus, tok)
    store = ts.open_store(corpus / "tokens" / "medical" / "train")
    order = np.random.default_rng(5).permutation(np.arange(20, 80))
    stream = DocStream(store, order, SEQ, n_rows, repeat_seed=[0, 11], on_short_data="repeat")
    ref = _reference_rows(_texts(corpus, "medical"), tok, order, n_rows, [0, 11])
    assert (stream.rows() == ref).all()
    assert all((stream[j] == ref[j]).all() for j in np.random.default_rng(0).integers(0, n_rows, 10))
    assert (stream[n_rows - 1] == ref[-1]).all() and (stream[0] == ref[0]).all()  # backwards after forwards


def test_packed_split_takes_shuffled_documents_without_repeats(corpus, tok):
    _tokenize(corpus, tok)
    rows = packed_split(corpus / "tokens", "general", "train", seq_len=SEQ, n_tokens=200, seed=3).rows()
    texts = _texts(corpus, "general")
    order = np.random.default_rng(3).permutation(len(texts))
    assert (rows == pack(encode_documents([texts[i] for i in order], tok), SEQ)[:13]).all()
    everything = packed_split(corpus / "tokens", "general", "train", seq_len=SEQ, n_tokens=10**9, seed=3)
    assert len(everything) == ts.open_store(corpus / "tokens/general/train").n_tokens // (SEQ + 1)


def test_row_source_is_interleave_row_by_row():
    for nd in range(12):
        for ng in range(12):
            flags, got = interleave(nd, ng), [row_source(i, nd, ng) for i in range(nd + ng)]
            assert [g[0] for g in got] == flags.tolist()
            assert [j for d, j in got if d] == list(range(nd)) and [j for d, j in got if not d] == list(
                range(ng)
            )
    rng = np.random.default_rng(0)
    for nd, ng in rng.integers(1, 50_000, size=(40, 2)):
        flags = interleave(int(nd), int(ng))
        pos = np.flatnonzero(flags)
        ks = rng.integers(0, nd, 25)
        assert all(domain_row_position(int(k), int(nd), int(ng)) == pos[k] for k in ks)
        assert all(row_source(int(i), int(nd), int(ng))[0] == flags[i] for i in rng.integers(0, nd + ng, 25))


@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 1.0])
def test_mixture_share_interleaving_and_determinism_over_stores(corpus, tok, r):
    _tokenize(corpus, tok)
    dom, gen = (ts.open_store(corpus / "tokens" / d / "train") for d in ("medical", "general"))
    kw = dict(domain_store=dom, domain_pos=np.arange(dom.n_docs), domain_ppl=None, general_store=gen,
              n_tokens=3000, r=r, seq_len=SEQ)  # fmt: skip
    a, b, c = build_mixture(seed=0, **kw), build_mixture(seed=0, **kw), build_mixture(seed=1, **kw)
    assert abs(a.domain_tokens - r * a.n_tokens) <= SEQ / 2 and a.n_tokens == 3000 // SEQ * SEQ
    prefix = np.cumsum(a.is_domain)
    assert np.abs(prefix - r * np.arange(1, len(prefix) + 1)).max() <= 1.0
    rows = a.rows()
    assert (rows == b.rows()).all() and (0 < r < 1) <= (rows != c.rows()).any()
    assert all((a[i] == rows[i]).all() for i in range(len(a)))  # streamed row i = materialised row i
    dom_rows = ts.open_store(corpus / "tokens/medical/train").tokens
    assert set(np.unique(rows[a.is_domain])) <= set(np.unique(dom_rows))


def test_eval_rows_are_the_first_rows_in_file_order(corpus, tok):
    _tokenize(corpus, tok)
    store = ts.open_store(corpus / "tokens" / "general" / "test")
    ref = pack(encode_documents(_texts(corpus, "general", "test"), tok), SEQ)
    assert (eval_rows(store, SEQ, 5, what="t") == ref[:5]).all()
    assert (eval_rows(store, SEQ, 10**6, what="t") == ref).all()
