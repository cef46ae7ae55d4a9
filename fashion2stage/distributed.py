"""What a trainer needs to know about ``torchrun``: which process it is, and how the processes agree.

``torchrun --nproc_per_node N fashion2stage <x>-train ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` set. :func:`init_distributed` reads them, joins the
process group (``nccl`` on CUDA, ``gloo`` on the CPU) and gives each process its device (``cuda:LOCAL_RANK``).
Without those variables it returns a one-process :class:`Dist` whose collectives do nothing, so a trainer has one
code path.

Rank 0 is the only process that writes (run folder, logs, checkpoints, plots); the others wait at barriers.
"""
from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# rank 0 alone runs validation and detector caching while the others wait at a barrier: allow it hours, not the
# default 10 minutes of nccl
TIMEOUT = timedelta(hours=4)


@dataclass(frozen=True)
class Dist:
    """This process's place among the ``torchrun`` processes (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this Dist started the process group, so :meth:`close` ends it

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a picklable value such as the run folder's path)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn):
        """``fn()`` run on rank 0 alone; its result, or the exception it raised, comes out on every rank."""
        out, err = None, None
        if self.is_main:
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001  (raised again below, on every rank)
                err = e
        out, err = self.broadcast((out, err))
        if err is not None:
            raise err
        return out

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over all ranks (float64, so sample counts stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def all_gather(self, value: float) -> list[float]:
        """``value`` of every rank, in rank order."""
        if not self.enabled:
            return [value]
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        out = [torch.zeros_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [float(o.item()) for o in out]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block, then the others (e.g. rank 0 fills a cache the others then only read)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel under torchrun, else ``model`` itself.

        DDP registers the parameters that require grad when it is built: build a new wrapper whenever that set
        changes (e.g. a frozen backbone is unfrozen), from the same ``model``.
        """
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def __enter__(self) -> Dist:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Leave the process group this Dist started, once every rank got here (gloo aborts a process whose peer
        tore the group down while it was still ending).

        DistributedDataParallel wrappers hold the group too, and they sit in reference cycles that only the garbage
        collector frees: collected here, while the interpreter is whole, so the group is really destroyed now and
        not during interpreter shutdown, where gloo's threads end in ``terminate called without an active
        exception`` (SIGABRT; pytorch/pytorch#190489). Call it after the wrappers went out of scope."""
        if self.owns_group and self.enabled:
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()
            gc.collect()


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def init_distributed(device: str = "cpu") -> Dist:
    """Join the torchrun process group when launched by torchrun; ``device`` "cuda" becomes ``cuda:LOCAL_RANK``."""
    wanted = torch.device(device)
    if not under_torchrun():
        return Dist(device=wanted)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if wanted.type == "cuda":
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), device=wanted, owns_group=owns)
