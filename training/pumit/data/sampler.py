"""Batch sampler grouping items of the same degree of anisotropy (DA), so a batch shares one crop size.

Every epoch (seeded by ``seed`` and the epoch number, identical on every rank):

* **uniform** mode (no ``weights``): each item once; each DA bucket is shuffled and cut into batches of
  ``batch_size``; the batches of all buckets are shuffled together;
* **weighted** mode (``weights`` given): items are drawn with replacement with probability proportional
  to their weight (e.g. to balance datasets) and dropped into their DA bucket; a full bucket becomes a
  batch (the paper's sampler), until ``num_samples // batch_size`` batches exist.

The global list of batches is then dealt round robin to the ``num_replicas`` ranks (batch ``i`` goes to
rank ``i % num_replicas``) after padding it with repeated batches (``drop_last=False``) or truncating it
(``drop_last=True``) to a multiple of ``num_replicas``: every rank gets the same number of batches, and
without padding no item is seen by two ranks.

With Lightning, build the DataLoader with ``batch_sampler=`` this sampler and create the Trainer with
``use_distributed_sampler=False`` (the sampler already splits across ranks). Call :meth:`set_epoch` at
the start of each epoch (``on_train_epoch_start``); if it is never called, each new iteration advances
the epoch by one, so epochs still differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from pumit.errors import InputError


class DABatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; all indices of a batch have the same DA.

    Args:
        das: DA of each item (``ProcessedDataset.das``).
        batch_size: items per batch (per rank).
        shuffle: shuffle items and batches (False: buckets in DA order, items in index order).
        seed: base seed; the epoch's permutation depends only on ``(seed, epoch)``.
        drop_last: drop incomplete batches and truncate the batch count to a multiple of
            ``num_replicas`` (else keep them and pad the count with repeated batches).
        num_replicas, rank: distributed world size and this process's rank (default: from
            ``torch.distributed`` when initialized, else 1 and 0).
        weights: per-item sampling weights (weighted mode, see the module docstring).
        num_samples: items drawn per epoch in weighted mode (default ``len(das)``).
    """

    def __init__(
        self,
        das: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        weights: Sequence[float] | None = None,
        num_samples: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise InputError(f"rank must be in [0, num_replicas), got rank {rank} of {num_replicas}")
        self.das = np.asarray(das, dtype=np.int64)
        if self.das.size == 0:
            raise InputError("cannot sample from an empty dataset")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.weights: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != self.das.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise InputError("weights must be one finite, non-negative number per item, not all zero")
            self.weights = w / w.sum()
        self.num_samples = int(num_samples) if num_samples is not None else len(self.das)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def _global_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        if self.weights is not None:
            return self._weighted_batches(rng)
        batches: list[list[int]] = []
        for da in np.unique(self.das):
            idx = np.flatnonzero(self.das == da)
            if self.shuffle:
                idx = rng.permutation(idx)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk.tolist())
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _weighted_batches(self, rng: np.random.Generator) -> list[list[int]]:
        wanted = max(self.num_samples // self.batch_size, 1)
        wanted = -(-wanted // self.num_replicas) * self.num_replicas
        buckets: dict[int, list[int]] = {}
        batches: list[list[int]] = []
        while len(batches) < wanted:
            for i in rng.choice(len(self.das), size=self.batch_size * 8, p=self.weights):
                bucket = buckets.setdefault(int(self.das[i]), [])
                bucket.append(int(i))
                if len(bucket) == self.batch_size:
                    batches.append(bucket.copy())
                    bucket.clear()
                    if len(batches) == wanted:
                        break
        return batches

    def _rank_batches(self, epoch: int) -> list[list[int]]:
        batches = self._global_batches(epoch)
        r = self.num_replicas
        if self.drop_last:
            batches = batches[: len(batches) // r * r]
        elif len(batches) % r:
            pad = r - len(batches) % r
            batches = batches + [batches[i % len(batches)] for i in range(pad)]
        return batches[self.rank::r]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1  # the next iteration gets a new permutation unless set_epoch() says otherwise
        yield from self._rank_batches(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank and every epoch)."""
        if self.weights is not None:
            wanted = max(self.num_samples // self.batch_size, 1)
            return -(-wanted // self.num_replicas)
        counts = np.bincount(self.das - self.das.min())
        full = int(sum(c // self.batch_size for c in counts))
        partial = int(sum(1 for c in counts if c % self.batch_size))
        total = full if self.drop_last else full + partial
        return total // self.num_replicas if self.drop_last else -(-total // self.num_replicas)
