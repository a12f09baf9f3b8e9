"""Tiny Llama-style causal LMs: build one from a size, count its non-embedding parameters, load a base model.

N in every scaling law here is the non-embedding parameter count (Kaplan et al. 2020, §2.1; the D-CPT Law
follows it): embedding and output (lm_head) matrices are excluded. N is always computed from the model,
never typed into a config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from cptlaw.errors import ModelError, first_line

SIZE_KEYS = ("d_model", "n_layers", "n_heads", "d_ff")


def llama_config(size: Mapping[str, Any], vocab_size: int, seq_len: int) -> LlamaConfig:
    """The `LlamaConfig` of a size `{d_model, n_layers, n_heads, d_ff}` (untied embeddings, no GQA)."""
    missing = [k for k in SIZE_KEYS if k not in size]
    if missing:
        raise ModelError(f"model size is missing {missing} (needs {list(SIZE_KEYS)}), got {dict(size)}")
    d_model, n_heads = int(size["d_model"]), int(size["n_heads"])
    if d_model % n_heads:
        raise ModelError(f"model size d_model={d_model} must be divisible by n_heads={n_heads}")
    return LlamaConfig(
        vocab_size=int(vocab_size),
        hidden_size=d_model,
        intermediate_size=int(size["d_ff"]),
        num_hidden_layers=int(size["n_layers"]),
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=int(seq_len),  # the training context; scoring slides windows of this length
        tie_word_embeddings=False,  # so that N excludes both embedding and lm_head cleanly
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_model(size: Mapping[str, Any], vocab_size: int, seq_len: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama-style causal LM; same (size, vocab, seq_len, seed) → same weights."""
    config = llama_config(size, vocab_size, seq_len)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = LlamaForCausalLM(config)
    return model


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters excluding the input embedding and the output projection (lm_head): the N of the laws."""
    skip = set()
    for get in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, get, lambda: None)()
        if module is not None:
            skip.update(id(p) for p in module.parameters())
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in skip or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


# `model.dtype`: the weights as loaded. bfloat16 halves memory (a 7B base needs 14 GB, not 28).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def weights_dtype(name: str) -> torch.dtype:
    """The torch dtype of a `model.dtype` name; one-line `ModelError` for any other name."""
    if str(name) not in DTYPES:
        raise ModelError(f"model.dtype must be one of {list(DTYPES)}, got {name!r}")
    return DTYPES[str(name)]


def load_causal_lm(path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """Load a local HF causal-LM dir (no hub access) in eval mode with `dtype` weights; one-line
    `ModelError` if it is not one."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    torch_dtype = weights_dtype(dtype)
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            f"base model dir {path} does not exist (run the pretrain stage or set model.name_or_path)"
        )
    if not (path / "config.json").is_file():
        raise ModelError(f"base model dir {path} has no config.json: not a Hugging Face model dir")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        first = first_line(exc)
        raise ModelError(f"base model dir {path} has an unreadable config.json: {first}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(f"base model dir {path} holds a '{config.model_type}' model, not a causal LM")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype)
    except Exception as exc:  # noqa: BLE001
        first = first_line(exc)
        raise ModelError(f"base model dir {path} could not be loaded as a causal LM: {first}") from None
    return model.eval()


def check_vocab(model: PreTrainedModel, tokenizer: Any) -> None:
    """Fail (one line) if the tokenizer can emit ids the model has no embedding for, or has no EOS token."""
    n_embed = model.get_input_embeddings().num_embeddings
    n_tok = len(tokenizer)
    if n_tok > n_embed:
        raise ModelError(
            f"tokenizer has {n_tok} tokens but the model embeds only {n_embed}: tokenizer and model do not match"
        )
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise ModelError("tokenizer has no eos_token: documents cannot be separated when packing")
