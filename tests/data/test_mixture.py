"""The CPT stream: domain share exact to within one sequence (checked on the tokens), evenly interleaved,
deterministic from the seed; short data repeats or errors; test sets are fixed."""

import numpy as np
import pytest

from cptlaw.data.corpora import read_split
from cptlaw.data.mixture import MixtureError, build_mixture, eval_rows, interleave
from cptlaw.data.token_store import open_store
from cptlaw.errors import CorpusError
from tests.helpers.cpt_project import SEQ_LEN, WORDS, make_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def _texts(root, domain, split="train"):
    return read_split(root / "data" / "corpora", domain, split)["text"].tolist()


def _domain_ids(tok):
    return {tok.convert_tokens_to_ids(w) for w in WORDS["medical"]}


def _store(root, domain, split="train"):
    return open_store(root / "data" / "tokens" / domain / split)


def _build(root, tok, **kw):
    dom = _store(root, "medical")
    args = dict(
        domain_store=dom, domain_pos=np.arange(dom.n_docs), domain_ppl=np.linspace(2, 20, dom.n_docs),
        general_store=_store(root, "general"), n_tokens=1600, r=0.3, seq_len=SEQ_LEN, seed=0,
    )  # fmt: skip
    args.update(kw)
    return build_mixture(**args)


@pytest.mark.parametrize("r", [0.0, 0.1, 0.33, 0.5, 0.67, 1.0])
def test_domain_share_exact_within_one_sequence(cpt_project, tok, r):
    mix = _build(cpt_project, tok, r=r)
    n_tokens = 1600 // SEQ_LEN * SEQ_LEN
    assert mix.n_tokens == n_tokens
    assert abs(mix.domain_tokens - r * n_tokens) <= SEQ_LEN
    assert mix.domain_tokens + mix.general_tokens == n_tokens
    # from the tokens themselves: every row is purely domain or purely general text
    dom_ids, eos = _domain_ids(tok), tok.eos_token_id
    is_dom = np.array([any(t in dom_ids for t in row if t != eos) for row in mix.rows()])
    mixed = [
        row
        for row in mix.rows()
        if any(t in dom_ids for t in row) and any(t not in dom_ids | {eos} for t in row)
    ]
    assert not mixed
    assert (is_dom == mix.is_domain).all()
    # evenly interleaved: every prefix holds round(r * k) domain rows to within one
    prefix = np.cumsum(mix.is_domain)
    k = np.arange(1, len(prefix) + 1)
    assert np.abs(prefix - r * k).max() <= 1.0


def test_deterministic_from_seed(cpt_project, tok):
    a, b, c = (_build(cpt_project, tok, seed=s) for s in (0, 0, 1))
    assert (a.rows() == b.rows()).all()
    assert not (a.rows() == c.rows()).all()


def test_general_stream_does_not_depend_on_r(cpt_project, tok):
    a, b = _build(cpt_project, tok, r=0.2), _build(cpt_project, tok, r=0.6)
    n = min((~a.is_domain).sum(), (~b.is_domain).sum())
    assert (a.rows()[~a.is_domain][:n] == b.rows()[~b.is_domain][:n]).all()


def test_stats_are_of_the_documents_trained_on(cpt_project, tok):
    dom = _texts(cpt_project, "medical")
    ppl = np.where(np.arange(len(dom)) < 10, 5.0, 50.0)
    mix = _build(cpt_project, tok, r=1.0, n_tokens=160, domain_pos=np.arange(10), domain_ppl=ppl)
    assert mix.stats.ppl_mean == pytest.approx(5.0) and mix.stats.ppl_std == pytest.approx(0.0)


def test_short_data_repeats_with_warning_or_errors(cpt_project, tok):
    mix = _build(cpt_project, tok, r=1.0, n_tokens=800, domain_pos=np.arange(3))
    assert mix.domain_epochs > 1 and any("repeated" in w for w in mix.warnings)
    with pytest.raises(MixtureError, match="on_short_data"):
        _build(cpt_project, tok, r=1.0, n_tokens=800, domain_pos=np.arange(3), on_short_data="error")
    with pytest.raises(MixtureError, match=r"`cpt.r` must be in \[0, 1\]"):
        _build(cpt_project, tok, r=1.5)


def test_eval_rows_fixed_and_capped(cpt_project, tok):
    store = _store(cpt_project, "medical", "test")
    a = eval_rows(store, SEQ_LEN, 4, what="t")
    assert a.shape == (4, SEQ_LEN + 1) and (a == eval_rows(store, SEQ_LEN, 4, what="t")).all()
    assert len(eval_rows(store, SEQ_LEN, 10_000, what="t")) < 10_000  # a small split: all of it


def test_interleave_counts():
    flags = interleave(3, 7)
    assert flags.sum() == 3 and len(flags) == 10


def test_read_split_unknown_domain(tmp_path):
    with pytest.raises(CorpusError, match="unknown domain 'nope'"):
        read_split(tmp_path, "nope", "train")
