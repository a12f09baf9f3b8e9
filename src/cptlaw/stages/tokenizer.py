"""Stage `tokenizer`: train a byte-level BPE on general/train (or adopt `tokenizer.path`) → data/tokenizer;
token counts per domain and split → reports/metrics/tokenizer.json.

`python -m cptlaw.stages.tokenizer profile=demo [tokenizer.path=/path/to/hf/tokenizer]`
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR
from cptlaw.cpu import setup_cpu
from cptlaw.data.corpora import SPLITS, read_split
from cptlaw.stages import exit_on_bad_input


def run(cfg: DictConfig) -> dict:
    os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.threads))  # the tokenizers thread pool
    setup_cpu(int(cfg.threads))
    from cptlaw.data.tokenizer import count_tokens, load_tokenizer, save_tokenizer, train_bpe

    t = cfg.tokenizer
    t0 = time.perf_counter()
    if t.path:
        tok = load_tokenizer(t.path)
        source = str(t.path)
    else:
        texts = read_split(t.corpora_dir, "general", "train")["text"].tolist()
        if t.max_train_chars:
            keep, total = [], 0
            for text in texts:
                if total >= int(t.max_train_chars):
                    break
                keep.append(text)
                total += len(text)
            texts = keep
        tok = train_bpe(
            texts,
            vocab_size=int(t.vocab_size),
            min_frequency=int(t.min_frequency),
            special_tokens=dict(t.special_tokens),
            length=len(texts),
        )
        source = "trained on general/train"
    save_tokenizer(tok, t.out_dir)
    tok = load_tokenizer(t.out_dir)  # what downstream stages will load
    t_train = time.perf_counter() - t0
    metrics: dict = {"vocab_size": len(tok), "train_s": round(t_train, 2)}
    for domain in ["general", *[d for d in cfg.domains if d != "general"]]:
        metrics[domain] = {}
        for split in SPLITS:
            texts = read_split(t.corpora_dir, domain, split)["text"].tolist()
            n_tok = count_tokens(tok, texts)
            n_chr = sum(map(len, texts))
            metrics[domain][split] = {"tokens": n_tok, "chars_per_token": round(n_chr / max(n_tok, 1), 3)}
        tr = metrics[domain]["train"]
        print(
            f"tokenizer: {domain}: train {tr['tokens']:,} tokens ({tr['chars_per_token']} chars/token), "
            f"val {metrics[domain]['val']['tokens']:,}, test {metrics[domain]['test']['tokens']:,}"
        )
    path = Path(t.metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
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
