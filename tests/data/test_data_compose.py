"""The data sections compose under every profile, and the shipped source table is valid."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cptlaw.config import CONF_DIR
from cptlaw.data.corpora import max_chars_for
from cptlaw.data.extract import EXTRACTORS
from cptlaw.data.sources import check_domains, parse_sources, select_sources
from cptlaw.data.user_sources import user_domains

PROFILES = sorted(p.stem for p in (CONF_DIR / "profile").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_composes_with_data_sections(profile, tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"profile={profile}", f"paths.root={tmp_path}"])
    OmegaConf.to_container(cfg, resolve=True)
    sources = parse_sources(cfg.fetch.sources)
    assert all(s.extractor in EXTRACTORS for s in sources)
    check_domains(cfg.domains, sources, user_domains(cfg.corpora))
    chosen = select_sources(sources, cfg.domains, cfg.fetch.exclude)
    assert {"general", *cfg.domains} == {s.domain for s in chosen}  # every domain has a source
    assert (
        cfg.fetch.raw_dir == f"{tmp_path}/data/raw" and cfg.tokenizer.out_dir == f"{tmp_path}/data/tokenizer"
    )
    assert 256 < cfg.tokenizer.vocab_size
    for domain in ("general", *cfg.domains):
        max_chars_for(domain, cfg.corpora.max_chars)
