"""Continual pre-training of a base model for D tokens, evaluated along the way (several (D, loss) points).

CPT is pre-training from a checkpoint (litgpt): the same `CausalLMModule`, started at (or below) the base
model's final pre-training learning rate to avoid the re-warming bump (design.md lesson), with a flat
schedule by default (`min_lr_ratio = 1`) so that an intermediate evaluation point of a long run is the
same experiment as a shorter run ending there.

Evaluation: domain-test and general-test token-mean loss (`mean_token_loss`) at tokens seen = 0 (the base
model: k1 and the base general loss), at the probe point and at geometrically spaced points up to D.

k2 (cross-domain D-CPT Law, Que et al. 2024 §3.3, "the rate at which the loss falls in a short probe"):
    k2 = (k1 − L_domain(T_p)) / ln(1 + T_p / seq_len)
the drop in domain loss (nats) per unit of log-sequences over the probe window, where T_p is the first
evaluation point at or after `probe_tokens` (≈ 1% of a normal run). Dividing by log-steps rather than tokens
keeps k2 comparable between probes of slightly different length, since loss falls roughly linearly in
log-tokens early in CPT. Runs with r < 1 see fewer domain tokens in the window; the fit stage uses k2 of the
`probe` study (r = 1) or of r = 1 runs for the cross-domain law.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import torch

from cptlaw.lm.datamodule import CPTDataModule
from cptlaw.lm.module import CausalLMModule, mean_token_loss


class InjectedFailure(BaseException):
    """Raised by `cpt.fail_job` (tests of resumable sweeps). Not an `Exception`, so, like a kill, it stops the
    whole multirun (Hydra's job runner only catches `Exception`) instead of failing one cell."""


def eval_points(n_tokens: int, n_points: int, probe_tokens: int, tokens_per_step: int) -> list[int]:
    """Token counts at which to evaluate (after step 0): the probe point, then `n_points` geometric points
    from twice the probe point to `n_tokens` (always included), deduplicated on step boundaries."""
    probe = max(int(probe_tokens), tokens_per_step)
    pts = {min(probe, n_tokens), n_tokens}
    if n_points > 1 and n_tokens > 2 * probe:
        pts.update(int(x) for x in np.geomspace(2 * probe, n_tokens, n_points))
    steps = sorted({max(1, math.ceil(p / tokens_per_step)) for p in pts})
    return [min(s * tokens_per_step, n_tokens) for s in steps]


def k2_rate(k1: float, loss_at_probe: float, probe_tokens: int, seq_len: int) -> float:
    """k2 = (k1 − L(T_p)) / ln(1 + T_p / seq_len): nats of domain loss lost per log-sequence (module doc)."""
    return float((k1 - loss_at_probe) / math.log1p(probe_tokens / seq_len))


@dataclass
class CurvePoint:
    tokens: int
    domain_loss: float
    general_loss: float


@dataclass
class CPTResult:
    """The evaluation curve of a run and the numbers derived from it."""

    curve: list[CurvePoint]
    k1: float
    k2: float
    probe_tokens: int
    train_seconds: float
    n_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / max(self.train_seconds, 1e-9)


@dataclass
class EvalCallback(L.Callback):
    """Evaluates both test sets at step 0 and whenever tokens seen reach the next planned point."""

    domain_batches: list[torch.Tensor]
    general_batches: list[torch.Tensor]
    points: list[int]
    on_point: Callable[[CurvePoint], None] = lambda p: None
    log_train_loss: Callable[[float, int], None] | None = None
    log_every_n_steps: int = 10
    fail_after_first: bool = False
    curve: list[CurvePoint] = field(default_factory=list)
    tokens: int = 0
    steps: int = 0
    eval_seconds: float = 0.0

    def __hash__(self) -> int:  # Lightning keeps callbacks in sets/dicts
        return id(self)

    def _evaluate(self, module: L.LightningModule) -> None:
        t0 = time.perf_counter()
        point = CurvePoint(
            self.tokens,
            mean_token_loss(module.model, self.domain_batches),
            mean_token_loss(module.model, self.general_batches),
        )
        self.eval_seconds += time.perf_counter() - t0
        self.curve.append(point)
        self.on_point(point)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self.curve and self.domain_batches:  # no test sets: count tokens only (benchmarks)
            self._evaluate(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.tokens += int(batch.shape[0] * (batch.shape[1] - 1))
        self.steps += 1
        if self.log_train_loss is not None and self.steps % self.log_every_n_steps == 0:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.log_train_loss(float(loss), self.tokens)
        if self.points and self.tokens >= self.points[0]:
            while self.points and self.tokens >= self.points[0]:
                self.points.pop(0)
            self._evaluate(module)
            if self.fail_after_first:
                raise InjectedFailure("injected failure (cpt.fail_job) after the first evaluation")

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.curve and self.curve[-1].tokens != self.tokens:
            self._evaluate(module)


def train_cpt(
    model: torch.nn.Module,
    data: CPTDataModule,
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    weight_decay: float,
    n_points: int,
    probe_tokens: int,
    trainer_kwargs: dict,
    on_point: Callable[[CurvePoint], None] = lambda p: None,
    log_train_loss: Callable[[float, int], None] | None = None,
    log_every_n_steps: int = 10,
    fail_after_first: bool = False,
) -> CPTResult:
    """Train `model` on `data` for its whole mixture (one epoch of the fixed order) and evaluate along the way."""
    mixture = data.data.mixture
    seq_len, n_tokens = mixture.seq_len, mixture.n_tokens
    tokens_per_step = data.batch_size * seq_len
    max_steps = math.ceil(len(mixture.train) / data.batch_size)
    points = eval_points(n_tokens, n_points, probe_tokens, tokens_per_step)
    probe_at = points[0]
    callback = EvalCallback(
        data.eval_batches("domain"), data.eval_batches("general"), list(points), on_point,
        log_train_loss, max(1, log_every_n_steps), fail_after_first,
    )  # fmt: skip
    module = CausalLMModule(
        model, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, max_steps=max_steps, weight_decay=weight_decay
    )
    trainer = L.Trainer(
        max_steps=max_steps,
        max_epochs=1,
        logger=False,  # metrics go to MLflow through `on_point`/`log_train_loss` with step = tokens seen
        callbacks=[callback],
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **trainer_kwargs,
    )
    model.train()  # base models are loaded in eval mode; Lightning keeps module modes as it finds them
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - t0 - callback.eval_seconds
    curve = callback.curve
    k1 = curve[0].domain_loss
    at_probe = next(p for p in curve if p.tokens >= probe_at)
    return CPTResult(
        curve=curve,
        k1=k1,
        k2=k2_rate(k1, at_probe.domain_loss, at_probe.tokens, seq_len),
        probe_tokens=at_probe.tokens,
        train_seconds=seconds,
        n_tokens=n_tokens,
    )


def plot_curves(curve: list[CurvePoint], title: str):  # -> matplotlib Figure
    """Domain and general test loss against tokens seen (symlog x so that step 0 shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = [p.tokens for p in curve]
    ax.plot(x, [p.domain_loss for p in curve], "o-", label="domain test")
    ax.plot(x, [p.general_loss for p in curve], "s-", label="general test")
    ax.set_xscale("symlog", linthresh=max(1, min([t for t in x if t > 0], default=1)))
    ax.set_xlabel("CPT tokens seen")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig
