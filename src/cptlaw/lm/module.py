"""The one LightningModule for causal-LM training: pre-training and CPT (litgpt: CPT is pre-training from a
checkpoint, not a forked script) — AdamW, linear warm-up then cosine decay to `min_lr`, a `tokens_seen`
counter and token-mean validation losses over several named dataloaders (`val_loss_<name>`).

Gradient clipping is the Trainer's job (`gradient_clip_val` in `conf/trainer/`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import lightning as L
import torch
import torch.nn.functional as F


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate used at optimizer step `step` (0-based): linear warm-up, cosine to `min_lr`, then flat.

    The rate after the last step (`step == max_steps`) is `min_lr`; CPT must start at or below the base
    model's final rate: a higher CPT rate makes the loss rise for the first tens of thousands of tokens.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def token_nll(model: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL (nats, fp32) of a `(B, seq_len + 1)` batch and the number of target tokens."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(input_ids=inputs).logits
    nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
    return nll, targets.numel()


@torch.inference_mode()
def mean_token_loss(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> float:
    """Token-mean next-token NLL (nats) over `(B, seq_len + 1)` batches; the one evaluation function."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for batch in batches:
            nll, n = token_nll(model, batch.to(device))
            total += float(nll)
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("mean_token_loss got no tokens (empty evaluation set)")
    return total / count


class CausalLMModule(L.LightningModule):
    """Trains `model` on packed `LongTensor (B, seq_len + 1)` batches; logs `train_loss`, `lr`, `tokens_seen`.

    `val_names` names the validation dataloaders in order (else the datamodule's `val_names`, else
    `0, 1, …`); each logs `val_loss_<name>` as the token-mean NLL over its whole set (sums are reduced
    across processes before dividing, so DDP gives the same number as one process).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        lr: float,
        min_lr: float,
        warmup_steps: int,
        max_steps: int,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        val_names: Sequence[str] | None = None,
    ):
        super().__init__()
        if not 0 <= min_lr <= lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={min_lr}, lr={lr}")
        if max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need max_steps >= 1 and warmup_steps >= 0, got {max_steps}, {warmup_steps}")
        self.model = model
        self.lr, self.min_lr = float(lr), float(min_lr)
        self.warmup_steps, self.max_steps = int(warmup_steps), int(max_steps)
        self.weight_decay, self.betas = float(weight_decay), tuple(betas)
        self.val_names = list(val_names) if val_names is not None else None
        self.tokens_seen = 0  # target tokens trained on, summed over all processes
        self._val_sums: dict[int, list[float]] = {}

    # --- training -------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        nll, n = token_nll(self.model, batch)
        loss = nll / n
        self.tokens_seen += n * self.trainer.world_size
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=batch.size(0))
        self.log("tokens_seen", float(self.tokens_seen), on_step=True, batch_size=batch.size(0))
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, batch_size=batch.size(0))
        return loss

    def configure_optimizers(self):
        # nanoGPT: decay matrices only (no decay on norms and biases).
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=self.betas)

        def factor(step: int) -> float:
            return lr_at(
                step, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps, max_steps=self.max_steps
            ) / max(self.lr, 1e-30)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def final_lr(self) -> float:
        """The rate the schedule has reached after the steps taken (what CPT may start at, at most)."""
        return lr_at(
            self.global_step, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
            max_steps=self.max_steps,
        )  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))

    # --- validation -----------------------------------------------------------------------------------
    def _val_name(self, idx: int) -> str:
        names = self.val_names
        if names is None and self._trainer is not None:
            names = getattr(self.trainer.datamodule, "val_names", None)
        return str(names[idx]) if names is not None and idx < len(names) else str(idx)

    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}

    def validation_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        nll, n = token_nll(self.model, batch)
        sums = self._val_sums.setdefault(dataloader_idx, [0.0, 0])
        sums[0] += float(nll)
        sums[1] += n

    def on_validation_epoch_end(self) -> None:
        for idx in sorted(self._val_sums):
            sums = torch.tensor(self._val_sums[idx], dtype=torch.float64, device=self.device)
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            loss = float(sums[0] / sums[1].clamp(min=1))
            self.log(f"val_loss_{self._val_name(idx)}", loss, sync_dist=False, add_dataloader_idx=False)
        self.log("tokens_seen", float(self.tokens_seen))


class TrainTimer(L.Callback):
    """Wall-clock seconds spent in training batches only (evaluation excluded), for `tokens_per_s`."""

    def __init__(self):
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
