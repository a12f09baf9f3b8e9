"""Stage `corpora`: fetched sources (+ local / hf sources) → data/corpora/<domain>/{train,val,test}.parquet.

`python -m cptlaw.stages.corpora profile=demo`; stats per domain and split → reports/metrics/corpora.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.progress import Progress

from cptlaw.config import CONF_DIR, to_dict
from cptlaw.data.corpora import CorpusError, split_metrics
from cptlaw.data.corpus_stream import make_domain
from cptlaw.data.sources import check_domains, is_fetched, parse_sources, select_sources
from cptlaw.data.user_sources import user_domains, user_specs
from cptlaw.stages import exit_on_bad_input, write_json


def run(cfg: DictConfig) -> dict:
    c = cfg.corpora
    sources = parse_sources(cfg.fetch.sources)
    check_domains(cfg.domains, sources, user_domains(c))
    chosen = select_sources(sources, cfg.domains, cfg.fetch.get("exclude") or [])
    raw_dir = Path(c.raw_dir)
    if missing := [s.name for s in chosen if not is_fetched(s, raw_dir)]:
        raise CorpusError(f"sources {missing} are not in {raw_dir}: run the fetch stage first")
    details = {}
    domains = ["general", *[d for d in cfg.domains if d != "general"]]
    with Progress(transient=True, disable=not c.progress) as bar:
        task = bar.add_task("corpora", total=len(domains))
        for domain in domains:
            t0 = time.perf_counter()
            stats = make_domain(domain, chosen, raw_dir, user_specs(c), to_dict(c), int(cfg.seed),
                                progress=lambda msg: bar.update(task, description=msg))  # fmt: skip
            details[domain] = stats
            bar.advance(task)
            tr = stats["train"]
            print(f"corpora: {domain}: train {tr['documents']} docs / {tr['samples']} samples / {tr['chars']:,} chars, "
                  f"val {stats['val']['samples']}, test {stats['test']['samples']} samples ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    (Path(c.out_dir) / "stats.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    metrics = {d: split_metrics(s) for d, s in details.items()}
    write_json(c.metrics, metrics, indent=2)
    return metrics


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("corpora"):
        run(cfg)


if __name__ == "__main__":
    main()
