"""The training engine of the three torch trainers (Faster R-CNN detector, attribute heads, keypoint model).

A trainer builds its model, its data and its loss (and a validation function); :func:`fit` runs the rest, the
same way for all three, with or without ``torchrun``:

- :func:`start`: torch threads and seed, and the process's place under torchrun (:mod:`fashion2stage.distributed`);
  ``with start(...) as ctx:`` leaves the process group at the end;
- :func:`start_run`: the run folder, new (made by rank 0 only) or the one ``--resume`` continues, its log, and the
  files written before training (config.json, labels.json, box_errors.json);
- :func:`make_loader`: each rank's share of the training set (``DistributedSampler``, or ``SourceBalancedSampler``
  when the set concatenates several sources);
- :func:`schedule`: linear warm-up then cosine decay (or one-cycle), stepped once per batch;
- :func:`fit`: the epoch loop: :func:`train_one_epoch` (mixed precision, gradient clipping and the moving average
  of the weights as :class:`~fashion2stage.fit_settings.FitSettings` says, :mod:`fashion2stage.step`), validation
  and the best weights on rank 0, ``last.pt``, ``results.csv`` and ``train.log`` (:mod:`fashion2stage.checkpoint`),
  and resuming from ``last.pt``; :func:`plot_results`: ``results.png``.

As in torchvision's ``references/detection``: no trainer class and no callbacks; ``fit`` takes objects.
"""
from __future__ import annotations

import csv
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from fashion2stage.checkpoint import end_epoch, resume
from fashion2stage.distributed import Dist, init_distributed
from fashion2stage.fit_settings import FitSettings
from fashion2stage.labels import LabelSet
from fashion2stage.runs import load_config, new_run_dir, save_config, save_labels, save_weights
from fashion2stage.sampling import SourceBalancedSampler, WholeBatches
from fashion2stage.step import Stepper

Log = Callable[[str], None]
# settings a resumed run may change; every other one is read back from the run folder
RESUMABLE = ("epochs", "device", "threads", "workers", "resume", "project", "name")


def start(device: str = "cpu", threads: int | None = None, seed: int = 0) -> Dist:
    """First call of every trainer: join torchrun's process group if there is one, set threads and seed.
    ``with start(...) as ctx: return _train(cfg, ctx)`` leaves the group once ``_train`` has returned."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return init_distributed(device)


def open_run(project: str | Path, name: str | None, kind: str, resume: bool, ctx: Dist) -> Path:
    """``project/name``: an existing run folder of ``kind`` to resume, or a new one (made by rank 0, same on all)."""
    if resume:
        run = Path(project) / (name or "")
        if not name or not (run / "config.json").is_file():
            raise FileNotFoundError(f"{run}: nothing to resume (--resume needs --project/--name of a run folder)")
        load_config(run, kind=kind)
        return run
    return Path(ctx.on_main(lambda: str(new_run_dir(project, name, kind))))


def resumed_config(cfg, run: Path, kind: str):
    """On ``--resume`` a run goes on with the settings it started with, except the :data:`RESUMABLE` ones."""
    saved = load_config(run, kind=kind).get("train", {})
    names = {f.name for f in fields(cfg)} - set(RESUMABLE)
    return replace(cfg, **{k: v for k, v in saved.items() if k in names})


def run_log(run: Path, ctx: Dist) -> Log:
    """``log(msg)``: on rank 0 a timestamped line on stdout and in ``run/train.log``; nothing on other ranks."""
    def log(msg: str) -> None:
        if not ctx.is_main:
            return
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with (run / "train.log").open("a") as f:
            f.write(line + "\n")
    return log


def start_run(cfg, kind: str, ctx: Dist, labels: LabelSet, config: dict | None = None,
              box_errors: str | Path | None = None) -> tuple[Path, Log]:
    """The run folder ``cfg.project/cfg.name`` (a new one, or the one ``cfg.resume`` continues) and its log.

    Rank 0 writes ``config`` (on resume too, so that a longer ``--epochs`` is recorded; None: the trainer writes it
    once the model is known) and, in a new run, ``labels.json`` and a copy of the ``box_errors`` file the training
    crops are jittered with."""
    run = open_run(cfg.project, cfg.name, kind, cfg.resume, ctx)
    if ctx.is_main:
        if config is not None:
            save_config(run, config)
        if not cfg.resume:
            save_labels(run, labels)
            if box_errors is not None:
                shutil.copyfile(box_errors, run / "box_errors.json")
    return run, run_log(run, ctx)


def make_loader(dataset, batch_size: int, ctx: Dist, *, seed: int = 0, sources: Sequence[int] | None = None,
                num_samples: int | None = None, shares: Sequence[float] | None = None, sampler=None,
                min_last_batch: int = 1, workers: int = 0, collate_fn=None) -> DataLoader:
    """A training DataLoader over this rank's share, reshuffled each epoch from ``seed`` (see :func:`set_epoch`).

    ``sources``: sizes of the sources ``dataset`` concatenates, in order; with two or more (or a ``num_samples``
    per epoch over all ranks other than the whole set), :class:`SourceBalancedSampler` draws each with an equal
    share, or with ``shares`` (one number per source). ``sampler``: one the trainer built itself (it must give this
    rank its share). No sample is dropped: a last batch smaller than ``min_last_batch`` joins the one before it
    (2 for models with BatchNorm, which cannot train on one sample; :class:`WholeBatches`). With one source and no
    ``num_samples``, an epoch over all ranks sees every sample exactly once (when the set divides evenly between
    the ranks; else DistributedSampler repeats up to ``world_size - 1`` of them so every rank takes equal steps).
    """
    if sampler is None and sources is not None and (len(sources) > 1 or num_samples):
        sampler = SourceBalancedSampler(sources, num_samples, shares=shares, seed=seed, rank=ctx.rank,
                                        world_size=ctx.world_size)
    if sampler is None:  # also with one process: the order then depends on (seed, epoch) only, so resume repeats it
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_sampler=WholeBatches(sampler, batch_size, min_last_batch), num_workers=workers,
                      persistent_workers=workers > 0, collate_fn=collate_fn)


def schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, kind: str = "cosine",
             floor: float = 0.0) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-batch learning rate factor: linear warm-up over ``warmup_steps`` to the base lr, then cosine decay to
    ``floor`` x base lr at ``total_steps``; ``kind="onecycle"``: torch's OneCycleLR (25% rising)."""
    total_steps = max(total_steps, 1)
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total_steps, pct_start=0.25)
    warm = max(warmup_steps, 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(total_steps - warm, 1))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reseed the sampler's shuffle and the dataset's augmentation (where they have ``set_epoch``) for ``epoch``."""
    for part in (loader.batch_sampler, loader.dataset):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer, scheduler, loss_fn, epoch: int,
                    ctx: Dist, log: Log = print, log_every: int = 0, frozen: torch.nn.Module | None = None,
                    stepper: Stepper | None = None) -> dict:
    """One pass over this rank's share of ``loader`` (``epoch`` counts from 0).

    ``loss_fn(model, batch) -> (losses, n)``: named loss tensors, whose sum is minimised, and the samples in the
    batch. ``frozen``: a submodule kept in eval mode (its BatchNorm statistics fixed) while it does not learn.
    ``stepper``: how each step is taken (default: float32, plain ``optimizer.step()``).
    Returns the epoch's row: ``train_loss`` (and ``train_<name>`` per loss when several), means over every sample of
    every rank; ``lr``; ``train_samples`` (all ranks), ``samples_per_rank``; ``train_img_per_s`` (all ranks) and
    this process's ``train_seconds`` and ``train_cpu_seconds`` (the cost when other jobs share the machine);
    ``train_grad_norm`` (mean gradient norm before any cut) and, with clipping, ``train_clipped`` (share of steps cut).
    """
    if stepper is None:
        stepper = Stepper(FitSettings(amp="off", clip_grad=None), model, ctx.device)
    set_epoch(loader, epoch)
    model.train()
    if frozen is not None:
        frozen.eval()
    sums: dict[str, float] = {}
    norms: list[float] = []
    n, steps, t0, cpu0 = 0, len(loader), time.perf_counter(), time.process_time()
    for i, batch in enumerate(loader):
        with stepper.autocast():
            losses, size = loss_fn(model, batch)
        loss = sum(losses.values())
        value = float(loss.detach())
        if not math.isfinite(value):
            parts = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            raise FloatingPointError(f"epoch {epoch + 1} step {i}: loss is {value} ({parts}); try a lower --lr")
        norms.append(stepper.step(loss, optimizer))
        scheduler.step()
        parts = {"loss": loss, **losses} if len(losses) > 1 else {"loss": loss}
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * size
        n += size
        if log_every and i % log_every == 0:
            log(f"epoch {epoch + 1} step {i}/{steps} loss {value:.4f} lr {optimizer.param_groups[0]['lr']:.4g}")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    names = list(sums)
    totals = ctx.all_reduce_sum([sums[k] for k in names] + [n])
    total_n = int(totals[-1])
    row = {f"train_{k}": v / max(total_n, 1) for k, v in zip(names, totals)}
    finite = [x for x in norms if math.isfinite(x)]  # the same on every rank: DDP averaged the gradients
    row["train_grad_norm"] = sum(finite) / max(len(finite), 1)
    if stepper.clip is not None:
        row["train_clipped"] = sum(not x <= stepper.clip for x in norms) / max(len(norms), 1)
    return {**row, "lr": optimizer.param_groups[0]["lr"], "train_samples": total_n,
            "samples_per_rank": " ".join(str(int(c)) for c in ctx.all_gather(n)),
            "train_img_per_s": total_n / max(seconds, 1e-9), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds}


@dataclass(frozen=True)
class Best:
    """The validation column that chooses the saved weights, and which way is better (``"max"`` or ``"min"``)."""
    metric: str
    mode: str = "max"

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"Best mode must be 'max' or 'min', got {self.mode!r}")

    @property
    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def better(self, score: float | None, best: float) -> bool:
        """A defined ``score`` beyond ``best`` (NaN, as on a validation set without marks, never is)."""
        if score is None or math.isnan(score):
            return False
        return score > best if self.mode == "max" else score < best


@dataclass
class FitResult:
    best: float  # the best epoch's metric (NaN without a Best)
    best_epoch: int  # 0 when no epoch of any session had a defined metric
    train_seconds: float  # this process, summed over every session of the run
    train_cpu_seconds: float


Validate = Callable[[torch.nn.Module, int], dict]


def fit(run: Path, model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler,
        loss_fn, *, epochs: int, ctx: Dist, log: Log, settings: FitSettings | None = None,
        validate: Validate | None = None, best: Best | None = None, weights: str = "weights.safetensors",
        backbone: torch.nn.Module | None = None, freeze_epochs: int = 0, log_every: int = 0) -> FitResult:
    """Train ``model`` (unwrapped, on ``ctx.device``) in ``run`` up to ``epochs``, resuming from ``run/last.pt``.

    Each epoch: :func:`train_one_epoch`; then on rank 0 ``validate(model, epoch)`` (``epoch`` from 1; the model is
    the moving average when ``settings.ema``) adds its columns to the row, and ``run/weights`` is saved when
    ``row[best.metric]`` is the best so far (every epoch without ``best``); then ``last.pt`` (with the loss scaler
    and the average), the ``results.csv`` row and its log line. ``backbone``: a submodule frozen (no gradients,
    BatchNorm statistics fixed) for the first ``freeze_epochs`` epochs (column ``frozen_backbone``); the DDP wrapper
    is rebuilt when that changes. A run in which no epoch had a defined metric keeps the last weights.
    """
    settings = settings or FitSettings()
    state = resume(run, model, optimizer, scheduler, ctx, log, steps_per_epoch=len(loader))
    stepper = Stepper(settings, model, ctx.device)
    stepper.load_state_dict(state)
    log(f"fit: {stepper.describe()}")
    # "best_ne": the keypoint trainer's name for it before this engine
    best_score = float(state.get("best", state.get("best_ne", math.nan)))
    if best is not None and math.isnan(best_score):
        best_score = best.worst
    best_epoch = int(state.get("best_epoch", 0))
    seconds = {k: float(state.get(k, 0.0)) for k in ("train_seconds", "train_cpu_seconds")}
    net, net_frozen = None, None
    for epoch in range(int(state["epoch"]), epochs):
        frozen = backbone is not None and epoch < freeze_epochs
        if net is None or frozen != net_frozen:  # DDP registers the parameters that learn when it is built
            for p in backbone.parameters() if backbone is not None else ():
                p.requires_grad_(not frozen)
            net, net_frozen = ctx.wrap(model), frozen
        row = {"epoch": epoch + 1, **({"frozen_backbone": int(frozen)} if backbone is not None else {}),
               **train_one_epoch(net, loader, optimizer, scheduler, loss_fn, epoch, ctx, log, log_every,
                                 frozen=backbone if frozen else None, stepper=stepper)}
        for k in seconds:
            seconds[k] += row[k]
        if ctx.is_main:
            if validate is not None:
                row.update(validate(stepper.averaged, epoch + 1))
            if best is None or best.better(row.get(best.metric), best_score):
                best_score, best_epoch = (float(row[best.metric]) if best else math.nan), epoch + 1
                save_weights(run / weights, stepper.averaged)
        end_epoch(run, ctx, log, row, model, optimizer, scheduler, best=best_score, best_epoch=best_epoch,
                  **seconds, **stepper.state_dict())
    if ctx.is_main and not (run / weights).is_file():  # no epoch had a defined score
        save_weights(run / weights, stepper.averaged)
    ctx.barrier()
    return FitResult(best_score, best_epoch, **seconds)


def plot_results(run: Path) -> None:
    """``results.png``: one panel per numeric column of ``results.csv`` against the epoch (rank 0 only)."""
    path = run / "results.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []

    def number(v: str | None) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan
    cols = [c for c in (rows[0] if rows else {}) if c not in ("epoch", "samples_per_rank")
            and any(not math.isnan(number(r.get(c))) for r in rows)]
    if not cols:
        return
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    n, per_row = len(cols), min(len(cols), 4)
    fig, axes = plt.subplots(-(-n // 4), per_row, figsize=(4 * per_row, 3 * -(-n // 4)), squeeze=False)
    epochs = [number(r["epoch"]) for r in rows]
    for ax, c in zip(axes.flat, cols):
        ax.plot(epochs, [number(r.get(c)) for r in rows], marker=".")
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("epoch")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    tmp = run / ".results.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(run / "results.png")
