"""Per-sample perplexity of a candidate pool under a frozen base model (the perplexity landscape).

What is scored (lm-evaluation-harness `loglikelihood_rolling`): a sample's tokens x_1..x_n (no special
tokens) are preceded by the EOS id x_0 — the document separator the base model saw during packed
pre-training — and every x_i, i = 1..n, is scored exactly once as log p(x_i | x_<i). The EOS itself is not
scored. Summed NLL and token counts stay separate per sample until `cptlaw.data.landscape` computes
per-sample perplexity and the landscape statistics.

Which token is x_0 (`prefix_token_id`): our base models saw EOS between packed documents, so EOS is their
"start of document"; for a foreign Hugging Face model it is BOS (as in lm-evaluation-harness), else EOS.

Sliding windows (samples longer than the context `max_length` = W, with `stride` S ≤ W): over the sequence
t = x_0..x_n, window 1 feeds t[0:min(W, n)] and scores targets x_1..x_min(W,n). Window k > 1 ends at target
e_k = min(W + (k−1)·S, n), feeds t[e_k − W : e_k] and scores only the targets not scored before,
x_(e_(k−1)+1)..x_(e_k) (at most S of them), each with at least W − S tokens of context. S = W gives
disjoint windows (fastest, least context); S = 1 gives full context for every token (slowest).

Speed: windows of all samples are sorted by length and batched under a padded-token budget (right padding
+ attention mask, so real tokens never see padding), run under `torch.inference_mode`, and summed back per
sample in the original order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from cptlaw.lm.model import ModelError

IGNORE = -100  # target id of unscored (context or padding) positions


def rolling_windows(n: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows `(a, b, m)` over t = x_0..x_n: feed t[a:b], targets t[a+1:b+1], score the last m targets."""
    if max_length < 1 or not 1 <= stride <= max_length:
        raise ValueError(f"need 1 <= stride <= max_length, got stride={stride}, max_length={max_length}")
    if n <= 0:
        return []
    end = min(max_length, n)
    windows = [(0, end, end)]
    while end < n:
        new_end = min(end + stride, n)
        windows.append((new_end - max_length, new_end, new_end - end))
        end = new_end
    return windows


def window_settings(max_length: int | None, stride: int | None, context: int) -> tuple[int, int]:
    """`(max_length, stride)` of the rolling windows: `max_length` defaults to the model's `context`, `stride`
    to half of `max_length`; a one-line `ModelError` naming `score.stride` unless 1 <= stride <= max_length."""
    max_length = int(max_length or context)
    stride = int(stride or max(1, max_length // 2))
    if not 1 <= stride <= max_length:
        raise ModelError(f"score.stride must be in [1, {max_length}] (score.max_length), got {stride}")
    return max_length, stride


def prefix_token_id(tokenizer: Any, *, pretrained_here: bool) -> int:
    """x_0 of every sample: EOS for a base model pre-trained here (the document separator it was trained
    with), else the tokenizer's BOS, falling back to EOS (see the module docstring)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return tokenizer.eos_token_id if pretrained_here or bos is None else bos


@dataclass(frozen=True)
class Windows:
    """All windows of a list of samples: `sample[i]` owns window i, `ids[i]` = t[a:b+1], `n_scored[i]` = m."""

    sample: np.ndarray
    ids: list[np.ndarray]
    n_scored: np.ndarray


def make_windows(token_ids: Sequence[np.ndarray], prefix_id: int, max_length: int, stride: int) -> Windows:
    """Cut every sample (ids without the prefix) into rolling windows (see module docstring)."""
    sample, ids, n_scored = [], [], []
    for i, x in enumerate(token_ids):
        t = np.concatenate([[prefix_id], np.asarray(x, dtype=np.int64)])
        for a, b, m in rolling_windows(len(x), max_length, stride):
            sample.append(i)
            ids.append(t[a : b + 1])
            n_scored.append(m)
    return Windows(np.asarray(sample, dtype=np.int64), ids, np.asarray(n_scored, dtype=np.int64))


def length_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length: longest first, `len(batch) * max_len <= batch_tokens`."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        rows = max(1, int(batch_tokens) // int(lengths[order[start]]))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def collate_windows(windows: Windows, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch: `input_ids`, `attention_mask`, `targets` (IGNORE where unscored), `row` (window)."""
    width = max(len(windows.ids[r]) - 1 for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        t = torch.from_numpy(windows.ids[r])
        length, m = len(t) - 1, int(windows.n_scored[r])
        input_ids[j, :length] = t[:-1]
        mask[j, :length] = 1
        targets[j, length - m : length] = t[length - m + 1 :]
    return {"input_ids": input_ids, "attention_mask": mask, "targets": targets, "row": torch.as_tensor(rows)}


def window_batches(windows: Windows, batch_tokens: int) -> list[np.ndarray]:
    """`length_batches` of the windows (rows of `windows`)."""
    lengths = np.array([len(w) - 1 for w in windows.ids], dtype=np.int64)
    return length_batches(lengths, batch_tokens) if len(lengths) else []


def join_windows(
    groups: Sequence[Windows], n_samples: Sequence[int], batch_tokens: int
) -> tuple[Windows, list[np.ndarray]]:
    """Several groups' windows (of `n_samples` samples each) as one, samples and rows numbered on, each group's
    batches planned within the group: its batches, and so its scores, do not depend on the groups beside it."""
    sample_at = np.cumsum([0, *n_samples])
    row_at = np.cumsum([0] + [len(g.ids) for g in groups])
    joined = Windows(
        np.concatenate([g.sample + a for g, a in zip(groups, sample_at, strict=False)]).astype(np.int64),
        [w for g in groups for w in g.ids],
        np.concatenate([g.n_scored for g in groups]).astype(np.int64),
    )
    batches = [b + a for g, a in zip(groups, row_at, strict=False) for b in window_batches(g, batch_tokens)]
    return joined, batches


class WindowBatches(torch.utils.data.Dataset):
    """Pre-planned batches (use with `batch_size=None`); `batches` defaults to `window_batches`."""

    def __init__(self, windows: Windows, batch_tokens: int, pad_id: int, batches: list | None = None):
        self.windows, self.pad_id = windows, pad_id
        self.batches = window_batches(windows, batch_tokens) if batches is None else batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return collate_windows(self.windows, self.batches[i], self.pad_id)


# Causal LMs whose logits are exactly `lm_head(decoder(x).last_hidden_state)` (no soft-capping or scaling).
FAST_HEAD_MODELS = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}

# Bytes of float32 logits per output-projection chunk on CPU: a chunk stays in the L2 cache between the
# matmul that writes it and the log-softmax that reads it (benchmarks/scoring.py: 2-3x faster than one
# batch-sized logits matrix at a 4k vocabulary).
CPU_LOGITS_CHUNK_BYTES = 2 << 20
# On an accelerator chunks only bound memory: a 65k-token batch at a 128k vocabulary would otherwise need
# 34 GB of float32 logits.
DEVICE_LOGITS_CHUNK_BYTES = 1 << 30


def head_chunk_rows(vocab_size: int, device: torch.device) -> int:
    """Scored positions per output-projection chunk: L2-sized on CPU, 1 GiB of logits elsewhere."""
    budget = CPU_LOGITS_CHUNK_BYTES if device.type == "cpu" else DEVICE_LOGITS_CHUNK_BYTES
    return max(16, budget // (4 * vocab_size))


def head_nll(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """NLL of `targets` under the output projection `head(hidden)`, one cache-sized chunk at a time."""
    rows = head_chunk_rows(head.out_features, hidden.device)
    return torch.cat([
        F.cross_entropy(head(h).float(), t, reduction="none")
        for h, t in zip(hidden.split(rows), targets.split(rows), strict=True)
    ])  # fmt: skip


def _mask(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The attention mask, or None without padding (SDPA then takes its causal fast path)."""
    mask = batch["attention_mask"]
    return None if bool(mask.all()) else mask


def scored_hidden(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], scored: torch.Tensor
) -> torch.Tensor:
    """Last hidden states at the scored positions of a window batch (a `FAST_HEAD_MODELS` decoder)."""
    hidden = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=_mask(batch)).last_hidden_state
    return hidden[scored]


def _scored_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor], scored: torch.Tensor) -> torch.Tensor:
    """Token NLL at the scored positions only. For Llama-style models the output projection (most of the
    FLOPs of a tiny model with a 4k vocabulary) is applied to those positions alone, not to context or
    padding, in chunks (see `CPU_LOGITS_CHUNK_BYTES`)."""
    targets = batch["targets"][scored]
    head = model.get_output_embeddings()
    if type(model).__name__ in FAST_HEAD_MODELS and isinstance(head, torch.nn.Linear):
        return head_nll(head, scored_hidden(model, batch, scored), targets)
    logits = model(input_ids=batch["input_ids"], attention_mask=_mask(batch)).logits[scored]
    return F.cross_entropy(logits.float(), targets, reduction="none")


def batch_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed NLL (float64, nats) of the scored targets of each row of a window batch."""
    scored = batch["targets"] != IGNORE
    nll = _scored_nll(model, batch, scored)
    rows = torch.arange(scored.size(0), device=scored.device).unsqueeze(1).expand_as(scored)[scored]
    return torch.zeros(scored.size(0), dtype=torch.float64, device=nll.device).index_add_(
        0, rows, nll.double()
    )


class ScoreModule(L.LightningModule):
    """Frozen causal LM; `predict_step` returns per-window summed NLL (use `Trainer(inference_mode=True)`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        # back on the host: a GPU run's predictions would otherwise pile up in device memory
        return {"row": batch["row"].cpu(), "nll": batch_nll(self.model, batch).cpu()}


class WindowData(L.LightningDataModule):
    """The planned batches; with several processes each takes every `world_size`-th one (no sampler)."""

    def __init__(self, batches: WindowBatches):
        super().__init__()
        self.batches = batches

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        part = torch.utils.data.Subset(self.batches, range(rank, len(self.batches), world))
        return torch.utils.data.DataLoader(part, batch_size=None)


class SaveOutputs(L.Callback):
    """Each process saves its own outputs: a spawning strategy hands no predictions back to the caller."""

    def __init__(self, out_dir: str | Path):
        self.out_dir, self.rows, self.nll = Path(out_dir), [], []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.rows.append(outputs["row"])
        self.nll.append(outputs["nll"])

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        out = {"row": torch.cat(self.rows) if self.rows else torch.zeros(0, dtype=torch.long),
               "nll": torch.cat(self.nll) if self.nll else torch.zeros(0, dtype=torch.float64)}  # fmt: skip
        torch.save(out, self.out_dir / f"rank{trainer.global_rank}.pt")


def score_strategy(devices: int | str, strategy: str) -> str:
    """The Lightning strategy for `devices`: one device as is; several only with a spawning strategy (a
    `ddp` launcher would re-run the whole calling script, stage and all, in every process)."""
    if devices in (1, "1"):
        return strategy
    if strategy == "auto":
        return "ddp_spawn"
    if "spawn" not in str(strategy):
        raise ModelError(
            f"scoring on {devices} devices needs a spawning strategy, got strategy={strategy!r} "
            "(fix: score.trainer.strategy=ddp_spawn or auto)"
        )
    return strategy


def score_device(accelerator: str, precision: str, devices: Any, strategy: str = "auto") -> dict[str, Any]:
    """Lightning settings of a scoring run (`score.trainer`), checked on this machine before any work:
    `devices` a whole number >= 1, the strategy from `score_strategy`; one-line `ModelError`s."""
    from cptlaw.lm.trainer import check_trainer

    if not isinstance(devices, int) or devices < 1:
        raise ModelError(
            f"score.trainer.devices must be a whole number >= 1 (how many to use), got {devices!r}"
        )
    device = {"accelerator": str(accelerator), "precision": str(precision), "devices": devices}
    device["strategy"] = score_strategy(devices, str(strategy))
    check_trainer(device, "score.trainer")
    return device


def sample_sums(windows: Windows, n_samples: int, outputs: Sequence[dict[str, torch.Tensor]]) -> np.ndarray:
    """Per-sample summed NLL (original order) from predict outputs."""
    window_nll = np.zeros(len(windows.ids), dtype=np.float64)
    for out in outputs:
        window_nll[out["row"].numpy()] = out["nll"].numpy()
    return np.bincount(windows.sample, weights=window_nll, minlength=n_samples).astype(np.float64)


def score_token_ids(
    model: torch.nn.Module,
    token_ids: Sequence[np.ndarray],
    *,
    prefix_id: int,
    max_length: int,
    stride: int,
    batch_tokens: int = 16384,
    **device: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """`(nll, tokens)` per sample, in the given order: summed NLL (nats) and number of scored tokens.

    `device`: `accelerator` (cpu, cuda, auto, ...; default cpu) and `precision` (default 32-true) are
    Lightning's: e.g. `bf16-mixed` on a GPU (the float32 default keeps the NLL within 1e-5 of the reference;
    bf16 moves it by ~1e-3 nats/token). With `devices` > 1 the batches are dealt out to that many spawned
    processes (`strategy` auto = `ddp_spawn`). `progress_bar` shows Lightning's."""
    kw = dict(prefix_id=prefix_id, max_length=max_length, stride=stride, batch_tokens=batch_tokens)
    (out,) = score_groups(model, [token_ids], **kw, **device)
    return out


def score_groups(
    model: torch.nn.Module,
    groups: Sequence[Sequence[np.ndarray]],
    *,
    prefix_id: int,
    max_length: int,
    stride: int,
    batch_tokens: int = 16384,
    **device: Any,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`score_token_ids` of each group, in one launch of the Trainer: one process spawn for all of them (it
    costs seconds per launch), with each group's scores bit for bit those of scoring it alone."""
    sizes = [len(g) for g in groups]
    parts = [make_windows(g, prefix_id, max_length, stride) for g in groups]
    windows, batches = join_windows(parts, sizes, batch_tokens)
    nll = np.zeros(sum(sizes))
    if batches:
        nll = _predict(model, WindowBatches(windows, batch_tokens, prefix_id, batches), sum(sizes), **device)
    ends = np.cumsum(sizes)
    return [(nll[e - n : e], np.array([len(x) for x in g], dtype=np.int64)) for g, n, e in zip(groups, sizes, ends,
            strict=True)]  # fmt: skip


def _predict(model: torch.nn.Module, data: WindowBatches, n_samples: int, *, accelerator: str = "cpu",
             precision: str = "32-true", devices: int | str = 1, strategy: str = "auto",
             progress_bar: bool = False) -> np.ndarray:  # fmt: skip
    """Per-sample summed NLL of the planned batches, over `devices` processes."""
    strategy = score_strategy(devices, strategy)
    with tempfile.TemporaryDirectory(prefix="cptlaw-score-") as tmp:
        trainer = L.Trainer(
            accelerator=accelerator, devices=devices, strategy=strategy, precision=precision, logger=False,
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress_bar,
            inference_mode=True, use_distributed_sampler=False, callbacks=[SaveOutputs(tmp)],
        )  # fmt: skip
        trainer.predict(ScoreModule(model), datamodule=WindowData(data), return_predictions=False)
        files = sorted(Path(tmp).glob("rank*.pt"))
        if len(files) != trainer.world_size:
            raise RuntimeError(f"scoring: {len(files)} of {trainer.world_size} processes returned outputs")
        outputs = [torch.load(f) for f in files]
    return sample_sums(data.windows, n_samples, outputs)


@torch.inference_mode()
def score_naive(model: torch.nn.Module, token_ids: Sequence[np.ndarray], *, prefix_id: int, max_length: int,
                stride: int) -> np.ndarray:  # fmt: skip
    """Reference: one window at a time, batch size 1, no Trainer (for tests and the benchmark)."""
    model.eval()
    out = np.zeros(len(token_ids), dtype=np.float64)
    for i, x in enumerate(token_ids):
        t = torch.as_tensor(np.concatenate([[prefix_id], x]), dtype=torch.long)
        for a, b, m in rolling_windows(len(x), max_length, stride):
            logits = model(input_ids=t[a:b].unsqueeze(0)).logits[0]
            lp = torch.log_softmax(logits.double(), dim=-1)
            tgt = t[a + 1 : b + 1]
            out[i] -= float(lp[-m:].gather(1, tgt[-m:].unsqueeze(1)).sum())
    return out
