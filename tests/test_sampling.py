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
