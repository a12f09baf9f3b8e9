"""Writes notebooks/analysis.ipynb (kept as code so the notebook's source is reviewable and diff-able).

python notebooks/make_analysis.py
"""

from pathlib import Path

import nbformat as nbf

CELLS = [
    (
        "md",
        """# cptlaw — runs and fits

Loads the CPT runs from the MLflow store (the system of record) and the fits written by the `fit` stage, and
draws the main plots. Set `CPTLAW_PROFILE` (default `demo`) and, for another store, `MLFLOW_TRACKING_URI`.""",
    ),
    (
        "code",
        """import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from cptlaw import tracking
from cptlaw.config import conf_dir
from cptlaw.laws import get_law

PROFILE = os.environ.get("CPTLAW_PROFILE", "demo")
with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
    cfg = compose("config", overrides=[f"profile={PROFILE}"])
tracking.configure_from(cfg.tracking)
reports = Path(cfg.paths.reports)
print("store:", cfg.tracking.uri, "| domains:", list(cfg.domains))""",
    ),
    ("md", "## The runs (MLflow `search_runs`, FINISHED only)"),
    (
        "code",
        """prefix = cfg.tracking.experiment_prefix or ""
experiments = [f"{prefix}{study}-{d}" for d in cfg.domains for study in ("dcpt", "ppl-regimes", "validate")]
runs = tracking.runs_frame(experiments, filter_string="tags.`cptlaw.stage` = 'cpt'")
cols = ["params.domain", "params.regime", "params.r", "metrics.n_params", "metrics.n_tokens",
        "metrics.k1", "metrics.domain_loss_final", "metrics.general_loss_final", "tags.cptlaw.study"]
print(len(runs), "finished CPT runs")
runs[cols].sort_values(["tags.cptlaw.study", "params.domain", "metrics.n_params", "params.r"]).head(40)""",
    ),
    ("md", "## Domain and general loss along training (one curve per run of the D-CPT grid)"),
    (
        "code",
        """grid = runs[runs["tags.cptlaw.study"] == "dcpt"]
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for _, row in grid.iterrows():
    for ax, key in zip(axes, ("domain_loss", "general_loss")):
        hist = [(s, v) for s, v in tracking.metric_history(row.run_id, key) if s > 0]
        if hist:
            s, v = zip(*hist)
            ax.plot(s, v, marker=".", label=f"{row['params.domain']} N={row['metrics.n_params']:.0f} r={row['params.r']}")
for ax, key in zip(axes, ("domain loss", "general loss")):
    ax.set_xscale("log"); ax.set_xlabel("tokens seen (D)"); ax.set_ylabel(key)
axes[0].legend(fontsize=6)
fig.tight_layout()""",
    ),
    ("md", "## Fits: quality per target and law (from `reports/fits.json`)"),
    (
        "code",
        """fits = json.loads((reports / "fits.json").read_text())
rows = []
for target, tg in fits["targets"].items():
    for law, f in tg.get("fits", {}).items():
        rows.append({"target": target, "law": law, "runs": tg.get("n_runs"), "r2": f.get("r2"),
                     "huber": f.get("huber"), "params": {k: round(v, 4) for k, v in f.get("params", {}).items()}})
    for law, why in tg.get("skipped", {}).items():
        rows.append({"target": target, "law": law, "runs": tg.get("n_runs"), "r2": None, "huber": None,
                     "params": f"skipped: {why}"})
pd.DataFrame(rows)""",
    ),
    ("md", "## Observed vs predicted (every fitted law on its own fitting table rows)"),
    (
        "code",
        """table = pd.read_csv(reports / "fit_table.csv")
fitted = [(t, law, f) for t, tg in fits["targets"].items() for law, f in tg.get("fits", {}).items()
          if tg.get("kind") in ("domain", "general")]
fig, ax = plt.subplots(figsize=(5, 5))
for target, law, f in fitted:
    tg = fits["targets"][target]
    sub = table[table["domain"] == tg["domain"]]
    if tg["kind"] == "domain":
        X, y = {"N": sub["N"], "D": sub["D"], "r": sub["r"]}, sub["domain_loss"]
    else:
        X, y = {"N": sub["N"], "D": sub["D"], "r": 1 - sub["r"]}, sub["general_loss"]
    form = get_law(law, epsilon=f["params"].get("epsilon", 1e-3))
    ax.scatter(y, form.predict(f["params"], {k: np.asarray(v, float) for k, v in X.items()}), s=8,
               label=f"{target} {law}")
lo, hi = ax.get_xlim()
ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
ax.set_xlabel("observed loss"); ax.set_ylabel("predicted loss"); ax.legend(fontsize=6)""",
    ),
    ("md", "## The perplexity landscape and the decisions"),
    (
        "code",
        """scores_dir = Path(cfg.paths.scores)
files = sorted(scores_dir.glob("*/*.parquet"))
fig, ax = plt.subplots(figsize=(6, 3.5))
for path in files:
    ax.hist(np.log(pd.read_parquet(path)["ppl"]), bins=40, alpha=0.5, label=f"{path.parent.name} ({path.stem})")
ax.set_xlabel("log perplexity under the base model"); ax.set_ylabel("samples"); ax.legend(fontsize=7)
for name in ("recommend.json", "validate.json"):
    path = reports / name
    print(name, "→", "missing" if not path.exists() else f"{len(path.read_text()):,} bytes; see reports/report.md")""",
    ),
]


def build() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in CELLS
    ]
    return nb


if __name__ == "__main__":
    out = Path(__file__).with_name("analysis.ipynb")
    nbf.write(build(), out)
    print(f"wrote {out}")
