"""Stage `tokenizer`: train a byte-level BPE on general/train (or adopt `tokenizer.path`) → data/tokenizer;
token counts per domain and split → reports/metrics/tokenizer.json.

`python -m cptlaw.stages.tokenizer profile=demo [tokenizer.path=/path/to/hf/tokenizer]`
"""

from __future__ import annotations

import os
import time
from typing import Any

import hydra
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR
from cptlaw.cpu import setup_cpu
from cptlaw.data.corpora import SPLITS, read_split
from cptlaw.stages import exit_on_bad_input, write_json


def fit_tokenizer(cfg: DictConfig) -> tuple[Any, str]:
    """Adopt `tokenizer.path`, or train a byte-level BPE on general/train; saved to `tokenizer.out_dir`."""
    from cptlaw.data.tokenizer import first_chars, load_tokenizer, save_tokenizer, train_bpe

    t = cfg.tokenizer
    if t.path:
        tok, source = load_tokenizer(t.path), str(t.path)
    else:
        texts = first_chars(read_split(t.corpora_dir, "general", "train")["text"], t.max_train_chars)
        tok = train_bpe(texts, vocab_size=int(t.vocab_size), min_frequency=int(t.min_frequency),
                        special_tokens=dict(t.special_tokens), length=len(texts))  # fmt: skip
        source = "trained on general/train"
    save_tokenizer(tok, t.out_dir)
    return load_tokenizer(t.out_dir), source  # what downstream stages will load


def run(cfg: DictConfig) -> dict:
    os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.threads))  # the tokenizers thread pool
    setup_cpu(int(cfg.threads))
    from cptlaw.data.tokenizer import split_token_counts

    t, t0 = cfg.tokenizer, time.perf_counter()
    tok, source = fit_tokenizer(cfg)
    t_train = time.perf_counter() - t0
    domains = ["general", *[d for d in cfg.domains if d != "general"]]
    counts = split_token_counts(
        tok, lambda d, s: read_split(t.corpora_dir, d, s)["text"].tolist(), domains, SPLITS
    )
    for domain, m in counts.items():
        print(f"tokenizer: {domain}: train {m['train']['tokens']:,} tokens ({m['train']['chars_per_token']} "
              f"chars/token), val {m['val']['tokens']:,}, test {m['test']['tokens']:,}")  # fmt: skip
    metrics = {"vocab_size": len(tok), "train_s": round(t_train, 2)} | counts
    write_json(t.metrics, metrics, indent=2)
    print(
        f"tokenizer: vocab {len(tok)} ({source}) in {t_train:.1f} s; total {time.perf_counter() - t0:.1f} s → {t.out_dir}"
    )
    return metrics


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("tokenizer"):
        run(cfg)


if __name__ == "__main__":
    main()
