"""Language models: tiny Llama-style builders, datamodules, the training LightningModule, the pre-training and CPT drivers, scoring."""

from cptlaw.lm.model import ModelError, build_model, check_vocab, load_causal_lm, non_embedding_params

__all__ = ["ModelError", "build_model", "check_vocab", "load_causal_lm", "non_embedding_params"]

import warnings

# Lightning warns on every Trainer when `srun` is on PATH outside a SLURM step ("The `srun` command is available
# ..."); SLURM jobs here are launched by hydra-submitit, which Lightning detects itself, so the hint is noise
# that would also become the first stderr line of a one-line stage error.
warnings.filterwarnings("ignore", message=r"The `srun` command is available")
