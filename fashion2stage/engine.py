"""The training skeleton the three torch trainers share (Faster R-CNN detector, attribute heads, keypoint model).

As in torchvision's ``references/detection``: each trainer reads its data, builds its model and runs its own short
epoch loop; this module holds what every loop does the same way, with or without ``torchrun``:

- :func:`start`: torch threads and seed, and the process's place under torchrun (:mod:`fashion2stage.distributed`);
- :func:`open_run`: the run folder, new (made by rank 0 only) or the one ``--resume`` continues;
- :func:`make_loader`: each rank's share of the training set (``DistributedSampler``, or ``SourceBalancedSampler``
  when the set concatenates several sources);
- :func:`schedule`: linear warm-up then cosine decay (or one-cycle), stepped once per batch;
- :func:`train_one_epoch`: one pass, losses and sample counts summed over all ranks;
- :func:`resume` / :func:`end_epoch`: ``last.pt`` (read with ``weights_only=True``), one ``results.csv`` row, one
  log line in ``train.log``; :func:`plot_results`: ``results.png``.

Only rank 0 writes; every rank reads ``last.pt`` on resume so all start from the same state.
"""
from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from fashion2stage.distributed import Dist, init_distributed
from fashion2stage.runs import append_results, load_checkpoint, load_config, new_run_dir, save_checkpoint, \
    truncate_results
from fashion2stage.sampling import SourceBalancedSampler

Log = Callable[[str], None]
# settings a resumed run may change; every other one is read back from the run folder
RESUMABLE = ("epochs", "device", "threads", "workers", "resume", "project", "name")


def start(device: str = "cpu", threads: int | None = None, seed: int = 0) -> Dist:
    """First call of every trainer: join torchrun's process group if there is one, set threads and seed."""
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


def make_loader(dataset, batch_size: int, ctx: Dist, *, seed: int = 0, sources: Sequence[int] | None = None,
                num_samples: int | None = None, shares: Sequence[float] | None = None, sampler=None,
                drop_last: bool = False, workers: int = 0, collate_fn=None) -> DataLoader:
    """A training DataLoader over this rank's share, reshuffled each epoch from ``seed`` (see :func:`set_epoch`).

    ``sources``: sizes of the sources ``dataset`` concatenates, in order; with two or more (or a ``num_samples``
    per epoch over all ranks other than the whole set), :class:`SourceBalancedSampler` draws each with an equal
    share, or with ``shares`` (one number per source). ``sampler``: one the trainer built itself (it must give this
    rank its share). ``drop_last`` drops an incomplete last batch only when the rank has more than one batch.
    """
    if sampler is None and sources is not None and (len(sources) > 1 or num_samples):
        sampler = SourceBalancedSampler(sources, num_samples, shares=shares, seed=seed, rank=ctx.rank,
                                        world_size=ctx.world_size)
    if sampler is None:  # also with one process: the order then depends on (seed, epoch) only, so resume repeats it
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    drop_last = drop_last and len(sampler) > batch_size
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
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
    for part in (loader.sampler, loader.dataset):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer, scheduler, loss_fn, epoch: int,
                    ctx: Dist, log: Log = print, log_every: int = 0, frozen: torch.nn.Module | None = None) -> dict:
    """One pass over this rank's share of ``loader`` (``epoch`` counts from 0).

    ``loss_fn(model, batch) -> (losses, n)``: named loss tensors, whose sum is minimised, and the samples in the
    batch. ``frozen``: a submodule kept in eval mode (its BatchNorm statistics fixed) while it does not learn.
    Returns the epoch's row: ``train_loss`` (and ``train_<name>`` per loss when several), means over every sample of
    every rank; ``lr``; ``train_samples`` (all ranks), ``samples_per_rank``; ``train_img_per_s`` (all ranks) and
    this process's ``train_seconds`` and ``train_cpu_seconds`` (the cost when other jobs share the machine).
    """
    set_epoch(loader, epoch)
    model.train()
    if frozen is not None:
        frozen.eval()
    sums: dict[str, float] = {}
    n, steps, t0, cpu0 = 0, len(loader), time.perf_counter(), time.process_time()
    for i, batch in enumerate(loader):
        losses, size = loss_fn(model, batch)
        loss = sum(losses.values())
        value = float(loss.detach())
        if not math.isfinite(value):
            parts = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            raise FloatingPointError(f"epoch {epoch + 1} step {i}: loss is {value} ({parts}); try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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
    return {**row, "lr": optimizer.param_groups[0]["lr"], "train_samples": total_n,
            "samples_per_rank": " ".join(str(int(c)) for c in ctx.all_gather(n)),
            "train_img_per_s": total_n / max(seconds, 1e-9), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds}


def resume(run: Path, model: torch.nn.Module, optimizer, scheduler, ctx: Dist, log: Log = print,
           steps_per_epoch: int = 0) -> dict:
    """Load ``run/last.pt`` into ``model`` (unwrapped), ``optimizer`` and ``scheduler`` on every rank; rank 0 drops
    ``results.csv`` rows written after it. Returns the checkpoint's other entries (``epoch``: epochs done; 0 and
    nothing else without a checkpoint)."""
    if not (run / "last.pt").is_file():
        return {"epoch": 0}
    state = load_checkpoint(run / "last.pt")
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    total = getattr(scheduler, "total_steps", None)
    if "scheduler" in state:
        scheduler.load_state_dict(state.pop("scheduler"))
    else:  # a checkpoint written before this engine (the detector set its lr by hand): go on where it stood
        scheduler.last_epoch = int(state["epoch"]) * steps_per_epoch - 1
        scheduler.step()
    if total is not None:  # one-cycle: --epochs may have grown since
        scheduler.total_steps = max(total, scheduler.total_steps)
    if ctx.is_main:
        truncate_results(run, int(state["epoch"]))
    log(f"resuming {run} after epoch {int(state['epoch'])}")
    return state


def end_epoch(run: Path, ctx: Dist, log: Log, row: dict, model: torch.nn.Module, optimizer, scheduler,
              **state) -> None:
    """Rank 0: ``row`` onto ``results.csv``, ``last.pt`` (model, optimizer, scheduler, ``row["epoch"]`` and
    ``state``), one log line. Every rank then waits for it."""
    if ctx.is_main:
        append_results(run, row)
        save_checkpoint(run / "last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "scheduler": scheduler.state_dict(), "epoch": int(row["epoch"]), **state})
        log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    ctx.barrier()


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
