"""The paper walkthrough's own tokenizer: `tokenizer.path` at a saved Hugging Face tokenizer (built here with
`tokenizers`, nothing downloaded) → the tokenizer stage adopts it, the tokenize stage builds stores with it, and
the CPT data path reads them; with another tokenizer the same stores are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from cptlaw.data.mixture import cpt_stores, load_cpt_data
from cptlaw.data.subsets import parse_regime
from cptlaw.data.token_store import open_store, tokenizer_fingerprint
from cptlaw.data.tokenizer import load_tokenizer
from cptlaw.errors import StoreError
from tests.helpers.cpt_project import WORDS, make_tokenizer, write_corpora


def _own_tokenizer(out: Path) -> Path:
    """A byte-level BPE trained on a few sentences, saved as an AutoTokenizer dir (a base model's files)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = [" ".join(words) for words in WORDS.values()] * 20
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>").save_pretrained(out)
    return out


def _cfg(root: Path, *extra: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"paths.root={root}", "profile=smoke", "domains=[medical,code]",
                                            "tokenize.progress=false", *extra])  # fmt: skip


def test_own_tokenizer_builds_stores_the_cpt_data_path_reads(project):
    from cptlaw.stages import tokenize, tokenizer

    write_corpora(project)
    own = _own_tokenizer(project / "models" / "my-base")
    tokenizer.run(_cfg(project, f"tokenizer.path={own}"))
    adopted = load_tokenizer(project / "data" / "tokenizer")
    fp = tokenizer_fingerprint(load_tokenizer(own))
    assert tokenizer_fingerprint(adopted) == fp and len(adopted) == len(load_tokenizer(own))
    tokenize.run(_cfg(project, "tokenize.workers=1"))
    store = open_store(project / "data" / "tokens" / "medical" / "train", tokenizer_fp=fp)
    assert store.meta["tokenizer"] == fp and store.eos_id == adopted.eos_token_id
    first = pd.read_parquet(project / "data" / "corpora" / "medical" / "train.parquet")["text"][0]
    assert list(store.doc(0)) == [
        *adopted(first, add_special_tokens=False)["input_ids"],
        adopted.eos_token_id,
    ]
    data = load_cpt_data(project / "data" / "tokens", project / "data" / "corpora", "medical", parse_regime("random"),
                         None, tokenizer_fp=fp, n_tokens=256, r=0.5, seq_len=16, seed=0, on_short_data="repeat",
                         eval_sequences=4)  # fmt: skip
    rows = data.mixture.rows()
    assert rows.shape == (16, 17) and rows.max() < len(adopted) and data.domain_test.shape == (4, 17)
    assert np.count_nonzero(rows == adopted.eos_token_id) > 0  # documents separated by the own EOS
    with pytest.raises(StoreError, match=r"built with another tokenizer .*`tokenizer.path`\)$") as err:
        cpt_stores(project / "data" / "tokens", project / "data" / "corpora", "medical",
                   tokenizer_fingerprint(make_tokenizer()))  # fmt: skip
    assert "\n" not in str(err.value) and "medical/train" in str(err.value)
