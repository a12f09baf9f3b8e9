"""The fit stage's targets and the recommend stage's domains two at a time (`fit.n_jobs: 2`,
`recommend.n_jobs: 2`) vs one at a time, same process, same inputs.

    OPENBLAS_NUM_THREADS=1 python benchmarks/parallel_stages.py [--results docs/results/cpu] [--profile cpu]
                                                                [--stage fit recommend]

The inputs default to the committed `cpu` run's fitting table and fits (every law, held-out split and
bootstrap of the profile's fit and recommend configs); the results must be the same bit for bit, wall-clock
timings aside.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model  # noqa: E402

from cptlaw import fitting  # noqa: E402
from cptlaw.config import CONF_DIR, to_dict  # noqa: E402
from cptlaw.decide.inputs import load_fit_table, load_fits  # noqa: E402
from cptlaw.decide.usages import recommend_domains  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def fit_work(cfg: DictConfig, results: Path) -> tuple[str, Callable[[int], dict]]:
    table = load_fit_table(results / "fit_table.csv")
    dcpt, ppl = (table[table["study"] == s].drop(columns="study") for s in ("dcpt", "ppl_regimes"))
    targets = fitting.all_targets(dcpt, ppl, cfg.domains, cfg.fit.ppl_stats)
    c, seed = to_dict(cfg.fit), int(cfg.seed)
    return f"fit: {len(targets)} targets", lambda n: {
        t.name: r for t, r, _ in fitting.fit_targets(targets, c, seed, n)
    }


def recommend_work(cfg: DictConfig, results: Path) -> tuple[str, Callable[[int], dict]]:
    fits, table = load_fits(results / "fits.json"), load_fit_table(results / "fit_table.csv")
    fit_kw = {"n_starts": int(cfg.fit.n_starts), "delta": float(cfg.fit.huber_delta), "seed": int(cfg.seed)}

    def work(n: int) -> dict:
        out = recommend_domains(fits, table, cfg.recommend, int(cfg.seed), fit_kw, n)
        return {k: out[k] for k in ("domains", "errors", "cross_domain")}

    return f"recommend: {len(cfg.recommend.domains)} domains", work


def timed(work: Callable[[int], dict], n_jobs: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = work(n_jobs)
    return time.perf_counter() - t0, json.dumps(fitting.untimed(out), sort_keys=True, default=str)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--results", default=str(ROOT / "docs/results/cpu"), help="folder with fit_table.csv, fits.json"
    )
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--stage", nargs="+", choices=["fit", "recommend"], default=["fit", "recommend"])
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"profile={args.profile}"])
    print(f"CPU: {cpu_model()}; inputs {args.results} ({args.profile} config)")
    for stage in args.stage:
        what, work = {"fit": fit_work, "recommend": recommend_work}[stage](cfg, Path(args.results))
        (one, res_one), (two, res_two) = timed(work, 1), timed(work, 2)
        print(f"{what}: one at a time {one:.1f} s; two at a time {two:.1f} s; speed-up {one / two:.2f}x; "
              f"same results: {res_one == res_two}")  # fmt: skip


if __name__ == "__main__":
    main()
