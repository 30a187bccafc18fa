"""DABatchSampler: one DA per batch, deterministic per epoch, dealt round robin to ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pumit.data import DABatchSampler, index_sources
from pumit.errors import InputError
from pumit.spacing import degree_of_anisotropy

# a mixed collection: 23 items DA 0, 10 DA 2, 7 DA 5 (indices interleaved)
DAS = [0, 2, 5, 0, 0] * 5 + [0] * 8 + [2] * 5 + [5] * 2


def _epoch(sampler: DABatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_share_one_da(drop_last: bool) -> None:
    s = DABatchSampler(DAS, batch_size=4, drop_last=drop_last)
    batches = _epoch(s, 0)
    assert len(batches) == len(s)
    for b in batches:
        assert len({DAS[i] for i in b}) == 1
        assert len(b) == 4 or not drop_last
    flat = sorted(i for b in batches for i in b)
    if drop_last:
        assert len(flat) == len(set(flat)) and len(flat) == 4 * len(batches)
    else:
        assert flat == list(range(len(DAS)))  # every item exactly once


def test_deterministic_per_epoch() -> None:
    a = DABatchSampler(DAS, batch_size=4, seed=7)
    b = DABatchSampler(DAS, batch_size=4, seed=7)
    assert _epoch(a, 3) == _epoch(b, 3)
    assert _epoch(a, 3) != _epoch(a, 4)
    assert _epoch(a, 0) != _epoch(DABatchSampler(DAS, batch_size=4, seed=8), 0)
    c = DABatchSampler(DAS, batch_size=4, seed=7)  # without set_epoch, each iteration is the next epoch
    assert list(c) == _epoch(b, 0) and list(c) == _epoch(b, 1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks_no_overlap_same_length(drop_last: bool) -> None:
    ranks = [DABatchSampler(DAS, batch_size=3, seed=1, num_replicas=2, rank=r, drop_last=drop_last) for r in (0, 1)]
    per_rank = [_epoch(s, 5) for s in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0]) == len(ranks[1])
    whole = _epoch(DABatchSampler(DAS, batch_size=3, seed=1, drop_last=drop_last), 5)
    # rank r gets global batches r, r + 2, r + 4, ...
    assert per_rank[0] == whole[0::2][: len(per_rank[0])]
    assert per_rank[1] == whole[1::2] + whole[:1] * (len(per_rank[0]) - len(whole[1::2]))
    items = [set(i for b in batches for i in b) for batches in per_rank]
    if drop_last or len(whole) % 2 == 0:
        assert not items[0] & items[1]
    else:  # an odd batch count is padded with one repeated batch
        assert items[0] & items[1] <= set(whole[0])
    assert all(len({DAS[i] for i in b}) == 1 for batches in per_rank for b in batches)


def test_weighted_mode() -> None:
    weights = [0.0 if d == 5 else 1.0 for d in DAS]
    s = DABatchSampler(DAS, batch_size=4, weights=weights, num_samples=40, num_replicas=2, rank=1)
    batches = _epoch(s, 0)
    assert len(batches) == len(s) == 5
    assert all(len(b) == 4 and len({DAS[i] for i in b}) == 1 for b in batches)
    assert all(DAS[i] != 5 for b in batches for i in b)
    with pytest.raises(InputError):
        DABatchSampler(DAS, batch_size=4, weights=[0.0] * len(DAS))


def test_bad_arguments() -> None:
    with pytest.raises(InputError):
        DABatchSampler(DAS, batch_size=0)
    with pytest.raises(InputError):
        DABatchSampler(DAS, batch_size=2, num_replicas=2, rank=2)
    with pytest.raises(InputError):
        DABatchSampler([], batch_size=2)


def test_real_spacings_bucket(tmp_path: Path, hippocampus: Path, adrenal_npz: Path) -> None:
    records, _ = index_sources([hippocampus, adrenal_npz])
    das = [degree_of_anisotropy(r.spacing) for r in records]
    assert set(das) == {0}
    s = DABatchSampler(das, batch_size=16, num_replicas=2, rank=0, drop_last=True)
    assert len(s) == (len(das) // 16) // 2
    assert np.all(np.diff([len(b) for b in s]) == 0)
