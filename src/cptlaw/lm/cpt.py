"""Continual pre-training of a base model for D tokens, evaluated along the way (several (D, loss) points).

CPT is pre-training from a checkpoint (litgpt): the same `CausalLMModule`, started at (or below) the base
model's final pre-training learning rate to avoid the re-warming bump (a higher rate makes the loss rise
for the first tens of thousands of tokens), with a flat
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

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from cptlaw.config import config_root
from cptlaw.config import to_dict as cfg_dict
from cptlaw.errors import ModelError
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


def _ignore(point: CurvePoint) -> None:
    """The default `on_point` (a module-level function: a spawned DDP run pickles the callbacks)."""


@dataclass
class EvalCallback(L.Callback):
    """Evaluates both test sets at step 0 and whenever tokens seen reach the next planned point."""

    domain_batches: list[torch.Tensor]
    general_batches: list[torch.Tensor]
    points: list[int]
    on_point: Callable[[CurvePoint], None] = _ignore
    log_train_loss: Callable[[float, int], None] | None = None
    log_every_n_steps: int = 10
    fail_after_first: bool = False
    world: int = 1  # processes sharing each step (DDP): tokens seen count every process's rows
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

    # Under DDP every process holds the same weights: only global rank 0 evaluates and logs (the others wait
    # at the next gradient all-reduce), so a run has one curve and one set of metrics, never one per process.
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero and not self.curve and self.domain_batches:  # no test sets: benchmarks
            self._evaluate(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.tokens += int(batch.shape[0] * (batch.shape[1] - 1)) * self.world
        self.steps += 1
        if self.log_train_loss is not None and self.steps % self.log_every_n_steps == 0:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if self.world > 1:  # the mean over processes (every process reaches this line at this step)
                loss = trainer.strategy.reduce(loss.detach(), reduce_op="mean")
            if trainer.is_global_zero:
                self.log_train_loss(float(loss), self.tokens)
        if self.points and self.tokens >= self.points[0]:
            while self.points and self.tokens >= self.points[0]:
                self.points.pop(0)
            if trainer.is_global_zero:
                self._evaluate(module)
            if self.fail_after_first:
                raise InjectedFailure("injected failure (cpt.fail_job) after the first evaluation")

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if self.curve and self.curve[-1].tokens != self.tokens:
            self._evaluate(module)
        # A spawned DDP run hands `callback_metrics` (tensors) back to the launching process, nothing else.
        rows = [[p.tokens, p.domain_loss, p.general_loss] for p in self.curve]
        trainer.callback_metrics[CURVE_KEY] = torch.tensor(rows, dtype=torch.float64)
        trainer.callback_metrics[EVAL_SECONDS_KEY] = torch.tensor(self.eval_seconds, dtype=torch.float64)

    def recover(self, trainer: L.Trainer) -> None:
        """After `fit`: the curve from the callback metrics when training ran in spawned processes."""
        if self.curve or CURVE_KEY not in trainer.callback_metrics:
            return
        rows = trainer.callback_metrics[CURVE_KEY].tolist()
        self.curve = [CurvePoint(int(t), float(d), float(g)) for t, d, g in rows]
        self.eval_seconds = float(trainer.callback_metrics[EVAL_SECONDS_KEY])
        self.tokens = self.curve[-1].tokens if self.curve else 0


CURVE_KEY, EVAL_SECONDS_KEY = "cptlaw_curve", "cptlaw_eval_seconds"


def ddp_world(trainer_kwargs: dict) -> int:
    """Processes that share each optimizer step: `devices` under a DDP strategy, else 1."""
    strategy, devices = str(trainer_kwargs.get("strategy", "auto")), trainer_kwargs.get("devices", 1)
    if "ddp" not in strategy or not str(devices).isdigit():
        return 1
    return int(devices)


def ddp_trainer_kwargs(trainer_kwargs: dict) -> dict:
    """`devices > 1` on CPU without a strategy means DDP in spawned processes (`ddp_spawn`): the launching
    process keeps the MLflow run; the workers log into it by id."""
    kwargs = dict(trainer_kwargs)
    devices = kwargs.get("devices", 1)
    if str(devices).isdigit() and int(devices) > 1 and str(kwargs.get("strategy", "auto")) == "auto":
        kwargs["strategy"] = "ddp_spawn"
    return kwargs


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
    on_point: Callable[[CurvePoint], None] = _ignore,
    log_train_loss: Callable[[float, int], None] | None = None,
    log_every_n_steps: int = 10,
    fail_after_first: bool = False,
) -> CPTResult:
    """Train `model` on `data` for its whole mixture (one epoch of the fixed order) and evaluate along the way."""
    mixture = data.data.mixture
    seq_len, n_tokens = mixture.seq_len, mixture.n_tokens
    trainer_kwargs = ddp_trainer_kwargs(trainer_kwargs)
    world = ddp_world(trainer_kwargs)
    global_batch = data.batch_size
    if world > 1:
        # The same global batch as one process: each of the `world` processes takes batch_size / world rows
        # of every step (DistributedSampler, no shuffling: rank k gets rows k, k + world, ... of the order).
        if global_batch % world:
            raise ModelError(
                f"cpt.batch_size={global_batch} must be a multiple of cpt.trainer.devices={world}"
            )
        data.batch_size = global_batch // world
    tokens_per_step = global_batch * seq_len
    max_steps = math.ceil(mixture.n_seq / global_batch)
    points = eval_points(n_tokens, n_points, probe_tokens, tokens_per_step)
    probe_at = points[0]
    callback = EvalCallback(
        data.eval_batches("domain"), data.eval_batches("general"), list(points), on_point,
        log_train_loss, max(1, log_every_n_steps), fail_after_first, world,
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
        use_distributed_sampler=False,  # DDP: the data module's own unshuffled sampler (fixed order)
        **trainer_kwargs,
    )
    model.train()  # base models are loaded in eval mode; Lightning keeps module modes as it finds them
    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data)
    finally:
        data.batch_size = global_batch
    callback.recover(trainer)
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


# ------------------------------------------------------------------ one cell: data → tracked run → result


def _load(cfg: Any, p: Any) -> tuple[Any, Any, Any, float]:
    """Base model, the run's data module and regime, and the seconds it took (checked before any run)."""
    from cptlaw.data.mixture import load_cpt_data
    from cptlaw.data.subsets import parse_regime
    from cptlaw.data.token_store import tokenizer_fingerprint
    from cptlaw.lm.base import base_model_dtype, tokenizer_for
    from cptlaw.lm.datamodule import CPTDataModule
    from cptlaw.lm.model import check_vocab, load_causal_lm

    c, start = cfg.cpt, time.perf_counter()
    regime = parse_regime(c.regime, config_root(cfg))
    tokenizer = tokenizer_for(p.base_dir, cfg.paths.tokenizer)
    model = load_causal_lm(p.base_dir, base_model_dtype(cfg))
    check_vocab(model, tokenizer)
    cpt_data = load_cpt_data(
        cfg.paths.tokens, cfg.paths.corpora, str(c.domain), regime, p.scores_path,
        tokenizer_fp=tokenizer_fingerprint(tokenizer), n_tokens=int(c.n_tokens), r=float(c.r),
        seq_len=p.seq_len, seed=int(cfg.seed), on_short_data=str(c.on_short_data), eval_sequences=int(c.eval_sequences),
    )  # fmt: skip
    data = CPTDataModule(cpt_data, int(c.batch_size), int(c.eval_batch_size))
    return model, data, regime, time.perf_counter() - start


def _run_params(cfg: Any, p: Any, regime: Any, mixture: Any, n_params: int) -> dict[str, Any]:
    c = cfg.cpt
    return {
        "domain": c.domain, "regime": regime.name, "q_lo": regime.q_lo, "q_hi": regime.q_hi, "r": float(c.r),
        "n_params": n_params, "n_tokens": mixture.n_tokens, "base_model": p.base_id, "seed": int(cfg.seed),
        "profile": cfg.profile_name, "data_version": p.data_version, "config_hash": p.config_hash,
        "study": c.study, "lr": p.lr, "seq_len": p.seq_len, "batch_size": int(c.batch_size),
        "base_dir": str(p.base_dir), "ids_file": regime.ids_path or "",
    }  # fmt: skip


def _data_metrics(c: Any, regime: Any, mixture: Any, n_params: int, seconds: float) -> dict[str, float]:
    return {
        "n_params": n_params, "n_tokens": mixture.n_tokens, "r": float(c.r), "q_lo": regime.q_lo,
        "q_hi": regime.q_hi, **mixture.stats.as_metrics(), "domain_tokens": mixture.domain_tokens,
        "general_tokens": mixture.general_tokens, "r_actual": mixture.domain_tokens / mixture.n_tokens,
        "domain_epochs": mixture.domain_epochs, "general_epochs": mixture.general_epochs,
        "n_domain_samples": mixture.stats.n_samples, "data_seconds": seconds,
    }  # fmt: skip


def _tags(cfg: Any, p: Any, mixture: Any) -> dict[str, str]:
    from cptlaw.provenance import git_revision

    c = cfg.cpt
    tags = {"cptlaw.stage": "cpt", "cptlaw.study": str(c.study), "cptlaw.git_rev": git_revision()}
    warnings = list(mixture.warnings)
    if p.scores_path is None:
        warnings.append(f"no perplexity scores for base {c.scores_base or p.base_id}: ppl metrics are NaN")
    if warnings:
        tags["cptlaw.warning"] = "; ".join(warnings)
        print(f"[cpt] warning: {tags['cptlaw.warning']}")
    return tags


def _log_point(run_id: str, pt: CurvePoint) -> None:
    from cptlaw import tracking

    tracking.log_metrics({"domain_loss": pt.domain_loss, "general_loss": pt.general_loss}, step=pt.tokens,
                         run_id=run_id)  # fmt: skip


def _log_train_loss(run_id: str, loss: float, tokens: int) -> None:
    from cptlaw import tracking

    tracking.log_metrics({"train_loss": loss}, step=tokens, run_id=run_id)


def _train(cfg: Any, p: Any, model: Any, data: Any, fail_after_first: bool, run_id: str) -> CPTResult:
    """Train with evaluations logged into run `run_id` by id: under `ddp_spawn` they are logged from a worker
    process, which must not open a run of its own."""

    c = cfg.cpt
    trainer_kwargs = dict(cfg_dict(c.trainer)) | {"log_every_n_steps": int(c.log_every_n_steps)}
    return train_cpt(
        model, data, lr=p.lr, min_lr=p.lr * float(c.min_lr_ratio), warmup_steps=int(c.warmup_steps),
        weight_decay=float(c.weight_decay), n_points=int(c.eval_points), probe_tokens=int(c.probe_tokens),
        trainer_kwargs=trainer_kwargs,
        on_point=functools.partial(_log_point, run_id),
        log_train_loss=functools.partial(_log_train_loss, run_id),
        log_every_n_steps=int(c.log_every_n_steps), fail_after_first=fail_after_first,
    )  # fmt: skip


def _final_metrics(result: CPTResult, start: float) -> dict[str, float]:
    final = result.curve[-1]
    if not np.isfinite(final.domain_loss):
        raise RuntimeError(f"domain loss diverged (final {final.domain_loss})")
    return {
        "k1": result.k1, "k2": result.k2, "probe_tokens": result.probe_tokens,
        "domain_loss_final": final.domain_loss, "general_loss_final": final.general_loss,
        "general_loss_base": result.curve[0].general_loss, "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.train_seconds, "wall_seconds": time.perf_counter() - start,
    }  # fmt: skip


def train_cell(cfg: Any, p: Any, *, fail_after_first: bool = False) -> dict[str, Any]:
    """Train and log one planned cell (`cptlaw.lm.cpt_run.Plan`); returns its run id and final metrics."""
    from cptlaw import tracking
    from cptlaw.lm.model import non_embedding_params
    from cptlaw.lm.trainer import check_trainer

    c, start = cfg.cpt, time.perf_counter()
    check_trainer(ddp_trainer_kwargs(cfg_dict(c.trainer)), "cpt.trainer")
    model, data, regime, prep_seconds = _load(cfg, p)
    mixture, n_params = data.data.mixture, non_embedding_params(model)
    print(f"[cpt] {p.experiment}: base {p.base_id} (N={n_params:,}), regime {regime.name}, r={c.r}, "
          f"D={mixture.n_tokens:,} ({mixture.domain_tokens:,} domain), lr={p.lr:.2e}; data in {prep_seconds:.1f}s")  # fmt: skip
    run_name = f"{c.domain}-{p.base_id}-{regime.name}-r{float(c.r):g}-D{mixture.n_tokens}-s{cfg.seed}"
    torch.manual_seed(int(cfg.seed))
    with tracking.run(p.experiment, run_name=run_name, tags=_tags(cfg, p, mixture), config_hash=p.config_hash,
                      params=_run_params(cfg, p, regime, mixture, n_params),
                      artifact_root=cfg.tracking.get("artifact_root")) as active:  # fmt: skip
        tracking.log_dict(cfg_dict(cfg), "config.yaml")
        tracking.log_dataset(Path(cfg.paths.corpora) / str(c.domain), f"{c.domain}:{regime.name}:r={float(c.r):g}",
                             p.data_version)  # fmt: skip
        tracking.log_metrics(_data_metrics(c, regime, mixture, n_params, prep_seconds))
        result = _train(cfg, p, model, data, fail_after_first, active.info.run_id)
        metrics = _final_metrics(result, start)
        tracking.log_metrics(metrics)
        tracking.log_figure(plot_curves(result.curve, run_name), "loss_curve.png")
    final = result.curve[-1]
    print(f"[cpt] finished run {active.info.run_id}: domain {result.k1:.3f} -> {final.domain_loss:.3f}, general "
          f"{result.curve[0].general_loss:.3f} -> {final.general_loss:.3f}, k2={result.k2:.4f}, "
          f"{result.tokens_per_s:,.0f} tok/s, {metrics['wall_seconds']:.1f}s")  # fmt: skip
    return {"run_id": active.info.run_id, **metrics, "status": "finished"}
