"""Wall time of pre-training every base size one after the other vs side by side (`pretrain.n_jobs=2`), same
process, same data, and whether both write the same weights.

    .venv/bin/python benchmarks/pretrain_side_by_side.py [--profile demo] [--n-tokens 204800]

Needs a project whose tokenize stage has run (`make demo`, or `dvc repro tokenize` for the profile). The
real pretrain driver (`cptlaw.lm.pretrain.pretrain_sizes`) trains into temporary model folders and a
temporary SQLite store; the project's models and store are not touched. Serial first, then side by side.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import cpu_model
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from cptlaw.cpu import setup_cpu


def timed_pretrain(profile: str, n_tokens: int, models: Path, n_jobs: int) -> float:
    from cptlaw.lm.pretrain import pretrain_sizes

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"profile={profile}", f"pretrain.n_tokens={n_tokens}",
                                           f"paths.models={models}", f"pretrain.n_jobs={n_jobs}"])  # fmt: skip
    setup_cpu(int(cfg.threads))
    start = time.perf_counter()
    pretrain_sizes(cfg)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--n-tokens", type=int, default=204800, help="pre-training tokens per size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        serial = timed_pretrain(args.profile, args.n_tokens, Path(tmp) / "serial", 1)
        side = timed_pretrain(args.profile, args.n_tokens, Path(tmp) / "side", 2)
        same = all(
            (Path(tmp) / "serial" / "base" / d.name / "model.safetensors").read_bytes()
            == (d / "model.safetensors").read_bytes()
            for d in sorted((Path(tmp) / "side" / "base").iterdir())
        )
    print(f"CPU: {cpu_model()}; profile {args.profile}, {args.n_tokens:,} tokens per size")
    print(f"one after the other: {serial:.1f} s; side by side (2 processes): {side:.1f} s; "
          f"ratio {serial / side:.2f}x; same weights: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
