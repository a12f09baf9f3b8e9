"""The CPT fixture project (the `cpt_project` fixture of tests/conftest.py): tiny corpora with disjoint
vocabularies, a word-level tokenizer, a tiny base model (built with `cptlaw.lm.model.build_model`, saved with
`save_pretrained`) and a perplexity score file, all under a tmp project root; Hydra overrides for a fast CPT
run in it and the check of a CPT run's MLflow schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

WORDS = {
    "general": "the cat sat on a mat and dog ran to house by river with old man who saw bird".split(),
    "medical": "patient fever dose renal acute chronic therapy cardiac lesion biopsy tumour sepsis".split(),
    "code": "def return import class self lambda yield await async print range len".split(),
}
SEQ_LEN = 16
SIZE = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}


def _docs(domain: str, n: int, rng: np.random.Generator) -> list[str]:
    words = WORDS[domain]
    # a per-document "difficulty": how many distinct words it draws from (gives the landscape a spread)
    return [
        " ".join(rng.choice(words[: rng.integers(3, len(words) + 1)], size=rng.integers(8, 40)))
        for _ in range(n)
    ]


def write_corpora(root: Path, n_train: int = 120, n_test: int = 30) -> None:
    rng = np.random.default_rng(0)
    for domain in WORDS:
        for split, n in (("train", n_train), ("val", n_test), ("test", n_test)):
            texts = _docs(domain, n, rng)
            df = pd.DataFrame(
                {"id": [f"{domain}-{split}-{i}" for i in range(n)], "source": "fixture", "text": texts}
            )
            out = root / "data" / "corpora" / domain / f"{split}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(out)


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1}
    for words in WORDS.values():
        for w in words:
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


def write_base(root: Path, name: str = "xs", final_lr: float = 3e-3) -> Path:
    from cptlaw.lm.model import build_model

    tokenizer = make_tokenizer()
    model = build_model(SIZE, vocab_size=len(tokenizer), seq_len=SEQ_LEN, seed=0)
    out = root / "models" / "base" / name
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "cptlaw.json").write_text(json.dumps({"size": name, "seq_len": SEQ_LEN, "final_lr": final_lr}))
    tokenizer.save_pretrained(root / "data" / "tokenizer")
    write_tokens(root, tokenizer)
    return out


def write_tokens(root: Path, tokenizer=None) -> None:
    """The token stores of every corpus split under `root` (what the tokenize stage writes)."""
    from cptlaw.data.token_store import tokenize_corpora

    corpora = root / "data" / "corpora"
    domains = sorted(d.name for d in corpora.iterdir() if d.is_dir())
    tokenize_corpora(corpora, root / "data" / "tokens", tokenizer or make_tokenizer(), domains,
                     ["train", "val", "test"], shard_docs=1000, workers=1, progress=False)  # fmt: skip


def write_scores(root: Path, domain: str = "medical", base: str = "xs") -> Path:
    train = pd.read_parquet(root / "data" / "corpora" / domain / "train.parquet")
    n_distinct = train["text"].map(lambda t: len(set(t.split()))).to_numpy(float)
    ppl = 2.0 + n_distinct + np.random.default_rng(1).random(len(train))
    tokens = train["text"].map(lambda t: len(t.split()) + 1).to_numpy()
    df = pd.DataFrame({"id": train["id"], "nll": np.log(ppl) * tokens, "ppl": ppl, "tokens": tokens})
    out = root / "data" / "scores" / domain / f"{base}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out)
    return out


def overrides(root: Path, **cpt) -> list[str]:
    """Hydra overrides for a fast smoke CPT run in the fixture project (a key set to None is left out)."""
    base = {
        "domain": "medical", "base": "xs", "n_tokens": 1280, "batch_size": 4, "eval_sequences": 4,
        "eval_points": 3, "probe_tokens": 128, "log_every_n_steps": 5, "trainer.enable_progress_bar": False, "scores_base": "null",
    }  # fmt: skip
    base.update(cpt)
    return [
        f"paths.root={root}",
        "profile=smoke",
        *[f"cpt.{k}={v}" for k, v in base.items() if v is not None],
    ]


PARAMS = (
    "domain regime q_lo q_hi r n_params n_tokens base_model seed profile data_version config_hash"
).split()
METRICS = (
    "n_params n_tokens r q_lo q_hi ppl_mean ppl_std log_ppl_mean log_ppl_std domain_tokens general_tokens k1 k2 "
    "tokens_per_s domain_loss general_loss domain_loss_final general_loss_final"
).split()


def check_schema(row, history):
    """Every param, metric and tag of the CPT-run schema is on the run."""
    for p in PARAMS:
        assert f"params.{p}" in row and row[f"params.{p}"] not in (None, ""), p
    for m in METRICS:
        assert f"metrics.{m}" in row, m
    assert row["tags.cptlaw.stage"] == "cpt" and row["tags.cptlaw.study"] in ("dcpt", "ppl_regimes")
    assert row["tags.cptlaw.config_hash"] == row["params.config_hash"]
    steps = [s for s, _ in history]
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 3
    assert steps[-1] == int(row["params.n_tokens"])
    assert row["metrics.k1"] == pytest.approx(history[0][1])
