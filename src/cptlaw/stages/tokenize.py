"""Stage `tokenize`: every domain split → a memory-mapped token store, once; CPT runs, scoring and
pre-training stream from the stores instead of tokenizing text.

    python -m cptlaw.stages.tokenize profile=demo [tokenize.workers=8] [tokenize.shard_docs=50000]

Outs: `data/tokens/<domain>/<split>/` (`tokens.bin`, `offsets.npy`, `ids.parquet`, `meta.json`) for
`general` and every domain of `domains`, and `reports/metrics/tokenize.json` (documents, tokens, tokens/s per
split). A store that is current with its corpus split and tokenizer is skipped; an interrupted run resumes
from its finished shards. Driver: `cptlaw.data.token_store.tokenize_corpora`.
"""

from __future__ import annotations

import os
import time

import hydra
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input, write_json


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call it with a composed config); returns the metrics."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.threads))  # the in-process tokenizers pool
    setup_cpu(int(cfg.threads))
    from cptlaw.data.token_store import tokenize_corpora
    from cptlaw.data.tokenizer import load_tokenizer

    t, start = cfg.tokenize, time.perf_counter()
    domains = ["general", *[d for d in cfg.domains if d != "general"]]
    per_split = tokenize_corpora(
        t.corpora_dir, t.out_dir, load_tokenizer(t.tokenizer_dir), domains, list(t.splits),
        shard_docs=int(t.shard_docs), workers=int(t.workers), progress=bool(t.progress),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    metrics = {"seconds": round(seconds, 2), "workers": int(t.workers), **per_split}
    write_json(t.metrics, metrics, indent=2)
    total = sum(m["tokens"] for d in per_split.values() for m in d.values())
    print(f"tokenize: {total:,} tokens in {len(domains)} domains, {seconds:.1f} s → {t.out_dir}")
    return metrics


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("tokenize"):
        run(cfg)


if __name__ == "__main__":
    main()
