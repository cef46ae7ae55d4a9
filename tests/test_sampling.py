"""Sampling balanced per source: shares, no repeats before a source is exhausted, disjoint ranks."""
import numpy as np
import pytest

from fashion2stage.sampling import SourceBalancedSampler


def test_each_source_gets_its_share_however_large_it_is():
    s = SourceBalancedSampler([1000, 10, 90], num_samples=3000, seed=1)
    idx = np.array(list(s))
    counts = [np.sum(idx < 1000), np.sum((idx >= 1000) & (idx < 1010)), np.sum(idx >= 1010)]
    assert sum(counts) == 3000
    for c in counts:  # 1000 expected each; binomial sd ~26
        assert 850 < c < 1150, counts


def test_a_source_repeats_only_after_every_sample_was_drawn():
    s = SourceBalancedSampler([5, 50], num_samples=20, shares=[0.5, 0.5], seed=3)
    for epoch in range(5):
        s.set_epoch(epoch)
        small = [i for i in s if i < 5]
        assert small, "the small source was never drawn"
        first = small[:5]
        assert len(set(first)) == len(first)  # a permutation before any repeat
        assert set(small) <= set(range(5))


def test_ranks_split_one_epoch_order_and_epochs_differ():
    ranks = [SourceBalancedSampler([30, 7], num_samples=21, seed=0, rank=r, world_size=2) for r in range(2)]
    whole = ranks[0].epoch_indices()
    assert len(ranks[0]) == len(ranks[1]) == 11  # ceil(21 / 2): equal steps on every rank
    assert list(ranks[0]) + list(ranks[1]) != [] and sorted(list(ranks[0]) + list(ranks[1])) == sorted(whole.tolist())
    ranks[0].set_epoch(1)
    assert not np.array_equal(ranks[0].epoch_indices(), whole)


def test_empty_source_is_never_drawn_and_bad_arguments_are_refused():
    s = SourceBalancedSampler([0, 4], num_samples=8)
    assert set(s) <= {0, 1, 2, 3}
    with pytest.raises(ValueError):
        SourceBalancedSampler([0, 0])
    with pytest.raises(ValueError):
        SourceBalancedSampler([3], rank=2, world_size=2)


def test_30_garments_on_2_ranks_are_each_seen_once_per_epoch_and_counted():
    """The trainers' loaders (batch 8, a last batch of 1 merged: BatchNorm) for both ranks of a 2-process run: every
    sample exactly once per epoch across the ranks, equal steps, and train_one_epoch's count is the set's size
    (it read 16 when incomplete last batches were dropped)."""
    import torch

    from fashion2stage import engine
    from fashion2stage.distributed import Dist

    data = [(torch.tensor([float(i)]), torch.tensor(0.0)) for i in range(30)]
    for world, sources in ((2, None), (2, [30]), (1, None), (3, None)):
        loaders = [engine.make_loader(data, 8, Dist(rank=r, world_size=world), seed=5, sources=sources,
                                      min_last_batch=2) for r in range(world)]
        for epoch in range(3):
            seen = []
            for loader in loaders:
                engine.set_epoch(loader, epoch)
                batches = [b[0].flatten().int().tolist() for b in loader]
                assert len(batches) == len(loader) == len(loaders[0]) and min(map(len, batches)) >= 2
                seen += [i for b in batches for i in b]
            assert sorted(seen) == list(range(30)), (world, sources, epoch)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for r in range(2):  # each rank's own count (the all-reduce of a real group sums them: 15 + 15)
        loader = engine.make_loader(data, 8, Dist(rank=r, world_size=2), min_last_batch=2)
        row = engine.train_one_epoch(model, loader, opt, engine.schedule(opt, 2, 1), lambda m, b: (
            {"loss": (m(b[0]).squeeze(1) - b[1]).pow(2).mean()}, len(b[0])), 0, Dist(rank=r, world_size=2))
        assert row["train_samples"] == 15 and row["samples_per_rank"] == "15"


def test_whole_batches_merge_only_a_last_batch_too_small_to_train_on():
    from fashion2stage.sampling import WholeBatches

    assert list(WholeBatches(range(17), 8)) == [list(range(8)), list(range(8, 17))]  # 8 + 9: the 1 joined
    assert list(WholeBatches(range(18), 8)) == [list(range(8)), list(range(8, 16)), [16, 17]]
    assert list(WholeBatches(range(1), 8)) == [[0]] and len(WholeBatches(range(1), 8)) == 1  # nothing to join
    assert list(WholeBatches(range(9), 8, min_last=1)) == [list(range(8)), [8]]
    for n in range(1, 40):
        assert len(WholeBatches(range(n), 8)) == len(list(WholeBatches(range(n), 8)))
