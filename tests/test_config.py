"""Every profile and config group composes; paths are absolute; MLFLOW_TRACKING_URI overrides the store."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cptlaw.config import CONF_DIR, config_hash

PROFILES = sorted(p.stem for p in (CONF_DIR / "profile").glob("*.yaml"))


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_composes_and_resolves(profile, tmp_path):
    cfg = _compose([f"profile={profile}", f"paths.root={tmp_path}"])
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["profile_name"] == profile
    assert Path(resolved["paths"]["corpora"]).is_absolute()
    assert resolved["tracking"]["uri"] == f"sqlite:///{tmp_path}/mlruns/mlflow.db"


@pytest.mark.parametrize(
    "group", sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name not in {"profile", "hydra"})
)
def test_every_group_option_composes(group, tmp_path):
    defaults = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").defaults)
    in_defaults = any(isinstance(d, dict) and any(group in k.split() for k in d) for d in defaults)
    prefix = "" if in_defaults else "+"  # groups such as sweep/ are opt-in
    for option in sorted((CONF_DIR / group).glob("*.yaml")):
        cfg = _compose([f"{prefix}{group}={option.stem}", f"paths.root={tmp_path}"])
        OmegaConf.to_container(cfg, resolve=True)


def test_env_overrides_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5005")
    cfg = _compose([f"paths.root={tmp_path}"])
    assert cfg.tracking.uri == "http://127.0.0.1:5005"


def test_config_hash_is_stable_and_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_defines_the_keys_dvc_tracks(profile):
    """dvc.yaml tracks `conf/profile/<profile>.yaml` keys per stage; a missing key fails `dvc repro`."""
    stages = OmegaConf.load(CONF_DIR.parent / "dvc.yaml").stages
    prof = OmegaConf.load(CONF_DIR / "profile" / f"{profile}.yaml")
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            if isinstance(entry, str):
                continue
            for path, keys in entry.items():
                if path.startswith("conf/profile/"):
                    missing = [k for k in keys if k not in prof]
                    assert not missing, f"stage {name}: profile {profile} lacks {missing}"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profiles_trainer_settings_run_here(profile, tmp_path):
    """Pretrain, CPT and scoring Trainer settings of every profile build on this machine; `paper` (a GPU
    profile) leaves the device to Lightning in all three instead of pinning the CPU."""
    from cptlaw.lm.trainer import check_trainer

    cfg = _compose([f"profile={profile}", f"paths.root={tmp_path}"])
    sections = {"trainer": cfg.trainer, "cpt.trainer": cfg.cpt.trainer, "score.trainer": cfg.score.trainer}
    for where, section in sections.items():
        check_trainer(OmegaConf.to_container(section, resolve=True), where)
    if profile == "paper":
        assert {s.accelerator for s in sections.values()} == {"auto"}
