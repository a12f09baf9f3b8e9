"""Speedrun of the tiny base models: general validation loss vs CPU-seconds on the real corpora, for the
vocabulary, learning rate, shape, batch x seq_len, threads, precision and compilation (docs/speedrun.md).

    PYTHONPATH=src python benchmarks/speedrun.py --data data --out runs/speedrun --stage vocab
    PYTHONPATH=src python benchmarks/speedrun.py --data data --out runs/speedrun --stage plot

The clock is `time.process_time()` of this process (all its threads): the machine is shared with other jobs,
so wall time measures the neighbours as much as the run. Evaluations are taken off the clock. A run has
either a CPU budget (`--cpu-s`: the cosine schedule of `cptlaw.lm.module.lr_at` runs over CPU-time progress,
the run stops when the budget is spent) or a token budget (`--tokens`: steps = tokens / (batch x seq_len),
the schedule over steps, as the pretrain stage does). Vocabularies are compared in nats per character of
validation text (tokens per character differ per vocabulary); nats per token and bits per byte are kept too.

The loop is plain PyTorch (AdamW, decay on matrices only, grad-norm clip 1.0: what `CausalLMModule` under the
CPU Trainer does); the product trains through Lightning (`benchmarks/train_overhead.py` measures that).
Every stage writes `<out>/<stage>.json` (all runs, all curve points); `--stage plot` draws every JSON in
`<out>` to `<out>/<stage>.png` and prints a markdown table per stage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cptlaw.cpu import setup_cpu
from cptlaw.data.corpora import read_split
from cptlaw.data.packing import encode_documents, pack
from cptlaw.data.tokenizer import load_tokenizer, save_tokenizer, train_bpe
from cptlaw.lm.model import build_model, non_embedding_params
from cptlaw.lm.module import lr_at, token_nll

DOMAINS = ("medical", "code", "math")
QUICK_CHARS = 48_000  # general val text evaluated at the intermediate points (the whole split at the end)
POINTS = (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8)  # budget fractions with an evaluation (and 1.0)
SCHEDULE_STEPS = 1000  # virtual steps of the CPU-time schedule


# ---------------------------------------------------------------- units
def nats_per_char(nats_per_token: float, tokens: int, chars: int) -> float:
    """Loss per character of text from the loss per token and the token count of that text."""
    return nats_per_token * tokens / chars


def bits_per_byte(nats_per_token: float, tokens: int, n_bytes: int) -> float:
    """Loss in bits per UTF-8 byte from the loss per token and the token count of that text."""
    return nats_per_token * tokens / n_bytes / math.log(2)


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Run:
    """One training run; `cpu_s` or `tokens` is its budget."""

    name: str
    vocab: int = 1024
    d_model: int = 64
    n_layers: int = 2
    lr: float = 5e-3
    min_lr_frac: float = 0.1  # cosine floor = lr x this (the demo: 5e-3 -> 5e-4)
    warmup_frac: float = 0.05
    batch: int = 8
    seq_len: int = 256
    cpu_s: float | None = 60.0
    tokens: int | None = None
    threads: int = 1
    precision: str = "fp32"  # fp32 | bf16 (CPU autocast; evaluation is always fp32)
    compile: bool = False
    seed: int = 0

    @property
    def shape(self) -> dict[str, int]:
        """The `model.sizes` entry: 4 heads up to d_model 128, then head dim 32; d_ff = 4 d_model (as tiny.yaml)."""
        return {"d_model": self.d_model, "n_layers": self.n_layers, "n_heads": max(4, self.d_model // 32),
                "d_ff": 4 * self.d_model}  # fmt: skip


def parse_shape(text: str) -> tuple[int, int]:
    """'96x3' -> (d_model 96, 3 layers)."""
    d, layers = text.lower().split("x")
    return int(d), int(layers)


# ---------------------------------------------------------------- data
@dataclass
class EvalSet:
    """A validation text packed into rows, with the counts that turn nats/token into nats/char."""

    rows: np.ndarray  # (n, seq_len + 1)
    tokens: int  # tokens of the whole text, EOS after each document included
    chars: int
    n_bytes: int


@dataclass
class Corpus:
    """One vocabulary's tokenizer, general train stream and validation sets (packed per seq_len on demand)."""

    vocab: int
    tokenizer: Any
    train_stream: np.ndarray
    val_docs: dict[str, list[str]]
    _packed: dict[tuple[str, int], EvalSet] = field(default_factory=dict)

    def train_rows(self, seq_len: int) -> np.ndarray:
        return pack([self.train_stream], seq_len)

    def eval_set(self, name: str, seq_len: int) -> EvalSet:
        """`name`: 'quick' (the first QUICK_CHARS of general val), 'general' or a domain (whole val split)."""
        key = (name, seq_len)
        if key not in self._packed:
            docs = self.val_docs["general"] if name == "quick" else self.val_docs[name]
            if name == "quick":
                docs = first_docs(docs, QUICK_CHARS)
            ids = encode_documents(docs, self.tokenizer)
            self._packed[key] = EvalSet(
                pack(ids, seq_len), sum(map(len, ids)), sum(map(len, docs)),
                sum(len(d.encode("utf-8")) for d in docs),
            )  # fmt: skip
        return self._packed[key]


def first_docs(docs: Sequence[str], max_chars: int) -> list[str]:
    """The leading documents up to about `max_chars` characters."""
    out, total = [], 0
    for doc in docs:
        if total >= max_chars:
            break
        out.append(doc)
        total += len(doc)
    return out


def load_corpus(data: Path, vocab: int, cache: Path) -> Corpus:
    """Train (or reuse from `cache`) the BPE of `vocab` tokens on general train, as the tokenizer stage does,
    and encode general train once (cached as one EOS-separated stream)."""
    corpora = data / "corpora"
    train_docs = read_split(corpora, "general", "train")["text"].tolist()
    tok_dir = cache / f"tokenizer-{vocab}"
    if not (tok_dir / "tokenizer.json").is_file():
        tok_dir.parent.mkdir(parents=True, exist_ok=True)
        save_tokenizer(train_bpe(train_docs, vocab_size=vocab, length=len(train_docs)), tok_dir)
    tokenizer = load_tokenizer(tok_dir)
    stream_file = cache / f"general-train-{vocab}.npy"
    if not stream_file.is_file():
        np.save(stream_file, np.concatenate(encode_documents(train_docs, tokenizer)))
    val = {d: read_split(corpora, d, "val")["text"].tolist() for d in ("general", *DOMAINS)}
    return Corpus(vocab, tokenizer, np.load(stream_file), val)


def batches(rows: np.ndarray, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Shuffled training batches, epoch after epoch (a new permutation each epoch)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(rows))
        for start in range(0, len(order) - batch + 1, batch):
            yield torch.from_numpy(rows[order[start : start + batch]].astype(np.int64))


# ---------------------------------------------------------------- training
class CpuClock:
    """Process CPU seconds and wall seconds that can be paused (evaluations are off the clock)."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()

    def read(self) -> float:
        return self.cpu + time.process_time() - self._cpu0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.cpu += time.process_time() - self._cpu0
        self.wall += time.perf_counter() - self._wall0
        try:
            yield
        finally:
            self._cpu0, self._wall0 = time.process_time(), time.perf_counter()

    def wall_read(self) -> float:
        return self.wall + time.perf_counter() - self._wall0


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW as `CausalLMModule.configure_optimizers`: weight decay 0.1 on matrices only, betas (0.9, 0.95)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, es: EvalSet, batch: int = 32) -> dict[str, float]:
    """Token-mean NLL (fp32) of an eval set, with its nats/char and bits/byte."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(es.rows), batch):
        nll, n = token_nll(model, torch.from_numpy(es.rows[start : start + batch].astype(np.int64)))
        total, count = total + float(nll), count + n
    model.train()
    per_token = total / count
    return {"nats_per_token": per_token, "nats_per_char": nats_per_char(per_token, es.tokens, es.chars),
            "bits_per_byte": bits_per_byte(per_token, es.tokens, es.n_bytes)}  # fmt: skip


def progress_of(run: Run, clock: CpuClock, step: int, max_steps: int) -> float:
    """Share of the budget spent: CPU time for a CPU budget, optimizer steps for a token budget."""
    return clock.read() / run.cpu_s if run.tokens is None else step / max_steps


def lr_of(run: Run, progress: float, step: int, max_steps: int) -> float:
    """`lr_at` over steps (token budget) or over CPU-time progress (CPU budget, SCHEDULE_STEPS virtual steps)."""
    min_lr = run.lr * run.min_lr_frac
    if run.tokens is None:
        virtual = min(SCHEDULE_STEPS, int(progress * SCHEDULE_STEPS))
        return lr_at(virtual, lr=run.lr, min_lr=min_lr, warmup_steps=round(run.warmup_frac * SCHEDULE_STEPS),
                     max_steps=SCHEDULE_STEPS)  # fmt: skip
    return lr_at(step, lr=run.lr, min_lr=min_lr, warmup_steps=round(run.warmup_frac * max_steps),
                 max_steps=max_steps)  # fmt: skip


def train(run: Run, corpus: Corpus) -> dict[str, Any]:
    """Train one run, evaluating general val (quick set) at the POINTS of its budget and every val set at
    the end; returns the run, its parameter counts, throughput and curve."""
    torch.set_num_threads(run.threads)
    model = build_model(run.shape, vocab_size=len(corpus.tokenizer), seq_len=run.seq_len, seed=run.seed)
    forward = torch.compile(model) if run.compile else model
    opt = make_optimizer(model, run.lr)
    tokens_per_step = run.batch * run.seq_len
    max_steps = max(1, (run.tokens or 0) // tokens_per_step)
    quick = corpus.eval_set("quick", run.seq_len)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if run.precision == "bf16" else contextlib.nullcontext()
    )
    curve: list[dict[str, float]] = []
    points = iter((*POINTS, 1.0))
    next_point = next(points)
    step, first_step_cpu, train_loss = 0, None, float("nan")
    data = batches(corpus.train_rows(run.seq_len), run.batch, run.seed)
    clock = CpuClock()
    while True:
        progress = progress_of(run, clock, step, max_steps)
        if progress >= next_point or progress >= 1.0:
            with clock.paused():
                val = evaluate(model, quick)
                curve.append({"step": step, "tokens": step * tokens_per_step, "cpu_s": clock.cpu,
                              "wall_s": clock.wall, "train_loss": train_loss, **val})  # fmt: skip
                print(f"  {run.name}: {clock.cpu:6.1f} CPU-s {step * tokens_per_step:>9,} tok "
                      f"general {val['nats_per_token']:.3f} nats/tok {val['nats_per_char']:.4f} nats/char", flush=True)  # fmt: skip
            if progress >= 1.0:
                break
            next_point = next(points, 1.0)
        for group in opt.param_groups:
            group["lr"] = lr_of(run, progress, step, max_steps)
        with autocast:
            nll, n = token_nll(forward, next(data))
        loss = nll / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_loss, step = float(loss.detach()), step + 1
        if first_step_cpu is None:
            first_step_cpu = clock.read()  # includes compilation when compiled
    final = {name: evaluate(model, corpus.eval_set(name, run.seq_len)) for name in ("general", *DOMAINS)}
    n_total = sum(p.numel() for p in model.parameters())
    return {
        "run": asdict(run), "shape": run.shape, "n_params": non_embedding_params(model), "n_total": n_total,
        "steps": step, "tokens": step * tokens_per_step, "cpu_s": clock.cpu, "wall_s": clock.wall,
        "first_step_cpu_s": first_step_cpu, "tokens_per_cpu_s": step * tokens_per_step / clock.cpu,
        "tokens_per_wall_s": step * tokens_per_step / clock.wall,
        "uniform_nats_per_token": math.log(len(corpus.tokenizer)),
        "chars_per_token": {name: corpus.eval_set(name, run.seq_len).chars / corpus.eval_set(name, run.seq_len).tokens
                            for name in ("general", *DOMAINS)},
        "final": final, "curve": curve,
    }  # fmt: skip


# ---------------------------------------------------------------- stages
def base_run(a: argparse.Namespace) -> Run:
    d, layers = parse_shape(a.shape)
    return Run("base", vocab=a.vocab, d_model=d, n_layers=layers, lr=a.lr, batch=a.batch, seq_len=a.seq_len,
               cpu_s=None if a.tokens else a.cpu_s, tokens=a.tokens, seed=a.seed)  # fmt: skip


def stage_runs(stage: str, a: argparse.Namespace) -> list[Run]:
    """The runs of one study question; each varies one thing around `base_run`."""
    b = base_run(a)
    if stage == "vocab":
        return [replace(b, name=f"vocab {v}", vocab=v) for v in a.vocabs]
    if stage == "lr":
        return [replace(b, name=f"lr {lr:g}", lr=lr) for lr in a.lrs]
    if stage == "shape":
        return [replace(b, name=f"d{d} L{n}", d_model=d, n_layers=n) for d, n in map(parse_shape, a.shapes)]
    if stage == "sizes":
        return [replace(b, name=f"d{d} L{n} seed {s}", d_model=d, n_layers=n, seed=s)
                for d, n in map(parse_shape, a.shapes) for s in a.seeds]  # fmt: skip
    if stage == "system":
        return [replace(b, name="fp32 1 thread"), replace(b, name="fp32 2 threads", threads=2),
                replace(b, name="bf16 autocast", precision="bf16"), replace(b, name="torch.compile", compile=True)]  # fmt: skip
    if stage == "batch":
        pairs = [tuple(map(int, p.split("x"))) for p in a.batch_seq]
        return [replace(b, name=f"batch {bs} x seq {sl}", batch=bs, seq_len=sl) for bs, sl in pairs]
    raise ValueError(f"unknown stage {stage!r}")


def run_stage(stage: str, a: argparse.Namespace) -> Path:
    """Train every run of `stage` and write `<out>/<name>.json` (rewritten after each run)."""
    from _common import cpu_model

    out = a.out / f"{a.name or stage}.json"
    result: dict[str, Any] = {"stage": stage, "cpu": cpu_model(), "torch": torch.__version__, "runs": []}
    corpora: dict[int, Corpus] = {}
    for run in stage_runs(stage, a):
        if a.only and not any(part in run.name for part in a.only):
            continue
        if run.vocab not in corpora:
            corpora[run.vocab] = load_corpus(a.data, run.vocab, a.out / "cache")
        print(f"[speedrun] {stage}: {run.name}", flush=True)
        result["runs"].append(train(run, corpora[run.vocab]))
        out.write_text(json.dumps(result, indent=1))
    return out


# ---------------------------------------------------------------- report
def table(result: dict[str, Any]) -> str:
    """A markdown table of a stage's runs: sizes, throughput and final validation losses."""
    head = ("| run | N (non-emb) | total params | tokens | CPU-s | tok/CPU-s | general nats/tok | general nats/char "
            "| medical nats/char | code nats/char | math nats/char |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    lines = [head]
    for r in result["runs"]:
        f = r["final"]
        lines.append(
            f"| {r['run']['name']} | {r['n_params']:,} | {r['n_total']:,} | {r['tokens']:,} | {r['cpu_s']:.0f} | "
            f"{r['tokens_per_cpu_s']:,.0f} | {f['general']['nats_per_token']:.3f} | {f['general']['nats_per_char']:.4f} | "
            + " | ".join(f"{f[d]['nats_per_char']:.4f}" for d in DOMAINS) + " |"
        )  # fmt: skip
    return "\n".join(lines)


def plot(result: dict[str, Any], png: Path) -> None:
    """General val nats/char (quick set) vs CPU-seconds, one curve per run."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    for r in result["runs"]:
        pts = [p for p in r["curve"] if p["cpu_s"] > 0]
        ax.plot(
            [p["cpu_s"] for p in pts],
            [p["nats_per_char"] for p in pts],
            marker="o",
            ms=3,
            label=r["run"]["name"],
        )
    xmax = max(p["cpu_s"] for r in result["runs"] for p in r["curve"])
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500) if t <= 1.5 * xmax])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("training CPU-seconds (process time, evaluations excluded)")
    ax.set_ylabel("general val loss (nats/char)")
    save_figure(fig, ax, f"speedrun: {result['stage']}", png)


def save_figure(fig: Any, ax: Any, title: str, png: Path) -> None:
    """Title, grid and legend, then write the PNG and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def by_shape(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A stage's runs grouped by shape (the seeds of one size together)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in result["runs"]:
        groups.setdefault(f"d{r['shape']['d_model']} L{r['shape']['n_layers']}", []).append(r)
    return groups


def seed_table(result: dict[str, Any]) -> str:
    """Mean over seeds and seed spread (max - min) of the final nats/token per validation set and shape."""
    names = ("general", *DOMAINS)
    lines = ["| shape | N | seeds | CPU-s (mean) | " + " | ".join(f"{n} nats/tok (spread)" for n in names) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(names)]  # fmt: skip
    for shape, runs in by_shape(result).items():
        cells = []
        for n in names:
            vals = [r["final"][n]["nats_per_token"] for r in runs]
            cells.append(f"{np.mean(vals):.3f} ({max(vals) - min(vals):.3f})")
        cpu = np.mean([r["cpu_s"] for r in runs])
        lines.append(
            f"| {shape} | {runs[0]['n_params']:,} | {len(runs)} | {cpu:.0f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def plot_sizes(result: dict[str, Any], png: Path) -> None:
    """Final nats/token on every validation set vs non-embedding N (one marker per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    for name in ("general", *DOMAINS):
        xs = [r["n_params"] for r in result["runs"]]
        ax.scatter(xs, [r["final"][name]["nats_per_token"] for r in result["runs"]], s=14, label=name)
        means = {n: np.mean([r["final"][name]["nats_per_token"] for r in result["runs"] if r["n_params"] == n])
                 for n in sorted(set(xs))}  # fmt: skip
        ax.plot(list(means), list(means.values()), alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("final val loss (nats/token)")
    save_figure(fig, ax, f"speedrun: {result['stage']} (final, per seed)", png)


def report(out: Path) -> None:
    """A PNG and markdown tables per output name; `<name>-<letter>` JSONs (parts of one study run as parallel
    processes) are merged into `<name>`."""
    groups: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("*.json")):
        result = json.loads(path.read_text())
        key = re.sub(r"-[A-Za-z]$", "", path.stem)
        groups.setdefault(key, {**result, "runs": []})["runs"].extend(result["runs"])
    for key, result in groups.items():
        result["stage"] = key
        plot(result, out / f"{key}.png")
        print(f"## {key} ({result['cpu']}, torch {result['torch']})\n\n{table(result)}\n")
        if key.startswith("sizes"):
            plot_sizes(result, out / f"{key}-final.png")
            print(f"{seed_table(result)}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--stage", required=True, choices=["vocab", "lr", "shape", "sizes", "system", "batch", "plot"]
    )
    ap.add_argument(
        "--data", type=Path, default=Path("data"), help="the pipeline's data folder (corpora/ inside)"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/speedrun"))
    ap.add_argument("--name", default=None, help="output JSON name (default: the stage)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--shape", default="64x2", help="d_model x layers of the base run")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--cpu-s", type=float, default=60.0, help="CPU-second budget per run")
    ap.add_argument("--tokens", type=int, default=None, help="token budget per run (instead of --cpu-s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--only", nargs="+", default=None, help="run only the runs whose name contains one of these"
    )
    ap.add_argument("--vocabs", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    ap.add_argument("--lrs", type=float, nargs="+", default=[2e-3, 5e-3, 1e-2, 2e-2])
    ap.add_argument("--shapes", nargs="+", default=["64x2", "96x3", "128x4"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch-seq", nargs="+", default=["4x256", "8x256", "16x256", "16x128", "32x64"])
    a = ap.parse_args()
    if a.stage == "plot":
        report(a.out)
        return
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    setup_cpu(1)
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"[speedrun] wrote {run_stage(a.stage, a)}")


if __name__ == "__main__":
    main()
