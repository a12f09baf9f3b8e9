"""Language models: tiny Llama-style builders, packing, the training LightningModule, scoring."""

from cptlaw.lm.model import ModelError, build_model, check_vocab, load_causal_lm, non_embedding_params

__all__ = ["ModelError", "build_model", "check_vocab", "load_causal_lm", "non_embedding_params"]
