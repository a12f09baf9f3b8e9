"""The fit stage's targets two at a time (`fit.n_jobs: 2`) vs one at a time, same process, same fitting table.

    OPENBLAS_NUM_THREADS=1 python benchmarks/fit_targets_parallel.py [--table docs/results/cpu/fit_table.csv]
                                                                     [--profile cpu]

The table defaults to the committed `cpu` run's (every law, held-out split and bootstrap of the profile's
fit config); the results must be the same bit for bit, wall-clock timings aside.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model  # noqa: E402

from cptlaw import fitting  # noqa: E402
from cptlaw.config import CONF_DIR, to_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed_fits(targets: list, c: dict, seed: int, n_jobs: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    results = {t.name: r for t, r, _ in fitting.fit_targets(targets, c, seed, n_jobs)}
    return time.perf_counter() - t0, json.dumps(fitting.untimed(results), sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default=str(ROOT / "docs/results/cpu/fit_table.csv"))
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"profile={args.profile}"])
    table = pd.read_csv(args.table)
    dcpt, ppl = (table[table["study"] == s].drop(columns="study") for s in ("dcpt", "ppl_regimes"))
    targets = fitting.all_targets(dcpt, ppl, cfg.domains, cfg.fit.ppl_stats)
    c, seed = to_dict(cfg.fit), int(cfg.seed)
    one, res_one = timed_fits(targets, c, seed, 1)
    two, res_two = timed_fits(targets, c, seed, 2)
    print(f"CPU: {cpu_model()}")
    print(f"{len(targets)} targets of {args.table} ({args.profile} fit config)")
    print(f"one at a time: {one:.1f} s; two at a time: {two:.1f} s; speed-up {one / two:.2f}x")
    print(f"same results: {res_one == res_two}")


if __name__ == "__main__":
    main()
