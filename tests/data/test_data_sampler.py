"""BucketBatchSampler: determinism, single-bucket batches, exact length, resumable batch lists."""
from __future__ import annotations

import pytest

from studio.data import BucketBatchSampler

BUCKETS = [(32, 32)] * 7 + [(40, 24)] * 5 + [(24, 40)] * 2


def _flat(batches):
    return sorted(i for batch in batches for i in batch)


def test_same_seed_and_epoch_same_batches_other_epoch_other_order():
    first = BucketBatchSampler(BUCKETS, batch_size=2, seed=11)
    second = BucketBatchSampler(BUCKETS, batch_size=2, seed=11)
    first.set_epoch(4)
    second.set_epoch(4)
    assert list(first) == list(second)
    assert first.batches_for_epoch(4) != first.batches_for_epoch(5)
    assert first.batches_for_epoch(4) != BucketBatchSampler(BUCKETS, batch_size=2, seed=12).batches_for_epoch(4)


@pytest.mark.parametrize("batch_size,repeats,drop_last", [(1, 1, False), (2, 1, False), (3, 2, False),
                                                          (3, 2, True), (4, 3, True), (10, 1, True)])
def test_batches_single_bucket_and_len_exact(batch_size, repeats, drop_last):
    sampler = BucketBatchSampler(BUCKETS, batch_size=batch_size, seed=0, repeats=repeats, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len({BUCKETS[i] for i in batch}) == 1
        assert 1 <= len(batch) <= batch_size
        if drop_last:
            assert len(batch) == batch_size
    if not drop_last:
        assert _flat(batches) == sorted(list(range(len(BUCKETS))) * repeats)


def test_batches_for_epoch_matches_iteration_for_resume():
    sampler = BucketBatchSampler(BUCKETS, batch_size=3, seed=5, repeats=2)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert list(sampler) == sampler.batches_for_epoch(epoch)
    resumed = sampler.batches_for_epoch(1)[4:]
    sampler.set_epoch(1)
    assert list(sampler)[4:] == resumed


def test_invalid_arguments_and_empty():
    with pytest.raises(ValueError):
        BucketBatchSampler(BUCKETS, batch_size=0, seed=0)
    with pytest.raises(ValueError):
        BucketBatchSampler(BUCKETS, batch_size=1, seed=0, repeats=0)
    empty = BucketBatchSampler([], batch_size=4, seed=0)
    assert len(empty) == 0 and list(empty) == []
