"""Stage `cpt`: one continual-pre-training run, logged to MLflow with the schema of docs/CONTRACTS.md.

    python -m cptlaw.stages.cpt cpt.domain=medical cpt.base=s cpt.r=0.5 cpt.n_tokens=100000
    python -m cptlaw.stages.cpt -m +sweep=dcpt_grid profile=demo hydra/launcher=joblib2

The cell (`cptlaw.lm.cpt_run.run_cell`): every input checked (one-line error, exit 2, no run created) →
config hash → file lock on it → orphaned runs of the hash marked KILLED → skip if a FINISHED run has it →
train with evaluations → log. A result file in the Hydra job dir lets the sweep callback summarise a sweep.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cptlaw import layout
from cptlaw.config import CONF_DIR, register_resolvers
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input, write_json

register_resolvers()


def _hydra_job() -> tuple[int | None, str | None]:
    """(job number, output dir) of the Hydra job running this stage, if any."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    return hc.job.get("num"), hc.runtime.output_dir


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call it with a composed config). Returns the run's summary."""
    from cptlaw.lm.cpt_run import run_cell

    setup_cpu(int(cfg.threads))
    job, out_dir = _hydra_job()
    fail = cfg.cpt.fail_job is not None and job == int(cfg.cpt.fail_job)
    summary = run_cell(cfg, fail_after_first=fail)
    if out_dir:
        write_json(f"{out_dir}/{layout.CPT_RESULT_FILE}", summary, indent=2)
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("cpt"):
        run(cfg)


if __name__ == "__main__":
    main()
