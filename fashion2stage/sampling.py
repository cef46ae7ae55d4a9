"""Sampling balanced per source, for training on several datasets at once (and under torchrun).

A training set made of several sources (ccp street photos, landmark photos, product folders ...) is concatenated;
sample ``i`` of source ``s`` has the global index ``offsets[s] + i``. Drawn uniformly over the concatenation, a
large source drowns a small one. :class:`SourceBalancedSampler` draws each source with a given share (equal by
default) and each sample within its source uniformly without replacement, reshuffling a source when it runs out.

Under ``torchrun`` every process builds the same sampler with its ``rank`` and ``world_size``: all ranks draw the
same epoch order from ``seed + epoch`` and each keeps every ``world_size``-th index from ``rank``, so they see
disjoint halves (as torch's ``DistributedSampler`` does). Call :meth:`set_epoch` before each epoch.

:func:`split_class_folder` says which sources a class folder is, and their shares.
:class:`WholeBatches` cuts a rank's share into batches without dropping any sample: a last batch too small to train
on (BatchNorm needs two samples) joins the batch before it, so that an epoch sees every sample of the share once.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from fashion2stage.records import Dataset


class SourceBalancedSampler:
    """Indices into the concatenation of sources with ``sizes``; ``num_samples`` per epoch over all ranks
    (default: the total size, so one epoch costs what it did without balancing)."""

    def __init__(self, sizes: Sequence[int], num_samples: int | None = None, shares: Sequence[float] | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if not sizes or any(n < 0 for n in sizes) or sum(sizes) == 0:
            raise ValueError(f"source sizes must be non-negative with at least one sample, got {list(sizes)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sizes = [int(n) for n in sizes]
        shares = np.ones(len(sizes)) if shares is None else np.asarray(shares, dtype=np.float64)
        if shares.shape != (len(sizes),) or np.any(shares < 0):
            raise ValueError(f"shares {list(shares)} must be one non-negative number per source")
        shares = np.where(np.asarray(self.sizes) > 0, shares, 0.0)  # an empty source cannot be drawn
        self.shares = shares / shares.sum()
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        total = int(num_samples) if num_samples else sum(self.sizes)
        self.per_rank = -(-total // world_size)  # every rank takes the same number of steps
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        """This epoch's global order over all ranks (``per_rank * world_size`` indices)."""
        rng = np.random.default_rng((self.seed, self.epoch))
        n = self.per_rank * self.world_size
        source_of = rng.choice(len(self.sizes), size=n, p=self.shares)
        out = np.empty(n, dtype=np.int64)
        for s, size in enumerate(self.sizes):
            where = np.flatnonzero(source_of == s)
            if not len(where):
                continue
            reps = -(-len(where) // size)  # whole permutations, then cut: each sample once before any repeats
            order = np.concatenate([rng.permutation(size) for _ in range(reps)])[: len(where)]
            out[where] = self.offsets[s] + order
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank


def split_class_folder(ds: Dataset, by_type: bool = False) -> list[tuple[Dataset, float]]:
    """A source and its share of the draw (1 each). A class folder's garment photos and its "no garment" photos are
    two sources of one share each: the background photos get as much weight as the garments (at their natural 10%
    share of fashion-bench/products the shipped detector's first epoch left a garment on 97% of hat and shoe
    photos; BENCHMARKS.md, "Per domain"). ``by_type``: the garment photos' share is split equally between their
    garment types, one source each, so that a type with few photos (outwear: 6% of products/train) is drawn as
    often as the most common one (blouse: 56%)."""
    if not ds.classes:
        return [(ds, 1.0)]
    garments = [r for r in ds.records if r.item_type is not None]
    negatives = [r for r in ds.records if r.item_type is None]
    types = sorted({r.item_type for r in garments})
    if by_type and len(types) > 1:
        parts = [(replace(ds, records=[r for r in garments if r.item_type == t], source=f"{ds.source} ({t})"),
                  1.0 / len(types)) for t in types]
    else:
        parts = [(replace(ds, records=garments, source=f"{ds.source} (garment classes)"), 1.0)] if garments else []
    if negatives:
        parts.append((replace(ds, records=negatives, source=f"{ds.source} (no-garment classes)"), 1.0))
    return parts if len(parts) > 1 else [(ds, 1.0)]


class WholeBatches:
    """Batches of ``batch_size`` indices of ``sampler``, in its order, keeping every index: a last batch of fewer
    than ``min_last`` joins the one before it (so batches hold up to ``batch_size + min_last - 2``). With a
    DistributedSampler or a SourceBalancedSampler every rank gets the same number of batches, as DDP needs."""

    def __init__(self, sampler, batch_size: int, min_last: int = 2):
        if batch_size < 1 or min_last < 1:
            raise ValueError(f"batch_size {batch_size} and min_last {min_last} must be at least 1")
        self.sampler, self.batch_size, self.min_last = sampler, batch_size, min_last

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < self.min_last:
            last = batches.pop()
            batches[-1] = batches[-1] + last
        return iter(batches)

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full + (1 if rest and (rest >= self.min_last or full == 0) else 0)
