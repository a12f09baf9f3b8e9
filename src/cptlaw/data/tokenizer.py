"""Byte-level BPE tokenizer (HF `tokenizers`) trained on the general train split, saved as an HF tokenizer dir.

Byte-level: every string round-trips exactly (no unknown token), which per-sample perplexities over code,
ontology and metamath text need. No BOS/EOS is added on encoding: `cptlaw.data.packing` appends EOS itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from cptlaw.errors import TokenizerError, first_line

DEFAULT_SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}


def train_bpe(
    texts: Iterable[str],
    *,
    vocab_size: int,
    min_frequency: int = 2,
    special_tokens: Mapping[str, str] | None = None,
    length: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens (special tokens included) on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special = dict(DEFAULT_SPECIAL, **(special_tokens or {}))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(special) + 1:
        raise TokenizerError(
            f"`tokenizer.vocab_size` must be > {len(alphabet) + len(special)} (256 bytes + special tokens), got {vocab_size}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special.values()),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **special)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> Path:
    """`save_pretrained` into a temp dir, then rename over `out_dir` (never a half-written tokenizer)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """An HF tokenizer dir → fast tokenizer with an EOS token (and PAD = EOS if it has none)."""
    path = Path(path)
    if not path.is_dir():
        raise TokenizerError(
            f"tokenizer directory {path} does not exist (run the tokenizer stage, or fix `tokenizer.path`)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise TokenizerError(f"cannot load a tokenizer from {path}: {first}") from None
    if not getattr(tok, "is_fast", False):
        raise TokenizerError(f"tokenizer at {path} is not a fast (tokenizers-backed) tokenizer")
    if tok.eos_token is None:
        raise TokenizerError(f"tokenizer at {path} has no eos_token (set one in its tokenizer_config.json)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def count_tokens(tokenizer: PreTrainedTokenizerFast, texts: Iterable[str], batch_size: int = 1000) -> int:
    """Total tokens of `texts` (no special tokens), encoded in batches with the Rust backend."""
    backend = tokenizer.backend_tokenizer
    total = 0
    for batch in _batches(texts, batch_size):
        total += sum(len(enc.ids) for enc in backend.encode_batch(batch, add_special_tokens=False))
    return total


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def first_chars(texts: Iterable[str], max_chars: int | None) -> list[str]:
    """The leading texts up to about `max_chars` characters (all of them when `max_chars` is falsy)."""
    keep, total = [], 0
    for text in texts:
        if max_chars and total >= int(max_chars):
            break
        keep.append(text)
        total += len(text)
    return keep


def split_token_counts(
    tokenizer: PreTrainedTokenizerFast, read: Callable[[str, str], list[str]], domains: Iterable[str],
    splits: Iterable[str],
) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """Tokens and characters per token of every domain split (`read(domain, split)` gives its texts)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for domain in domains:
        for split in splits:
            texts = read(domain, split)
            n_tok = count_tokens(tokenizer, texts)
            out.setdefault(domain, {})[split] = {"tokens": n_tok,
                                                 "chars_per_token": round(sum(map(len, texts)) / max(n_tok, 1), 3)}  # fmt: skip
    return out
