"""What :func:`fashion2stage.engine.fit` keeps between epochs and sessions: ``last.pt`` (read with
``weights_only=True``), one ``results.csv`` row and one ``train.log`` line per epoch.

Only rank 0 writes; every rank reads ``last.pt`` on resume so all start from the same state.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from fashion2stage.distributed import Dist
from fashion2stage.runs import append_results, load_checkpoint, save_checkpoint, truncate_results

Log = Callable[[str], None]


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
