"""Identity-balanced batch sampler (P identities x K instances), as Cluster Contrast's
``RandomMultipleGallerySampler``, for pseudo labels that change every epoch and for DDP.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["IdentityBatchSampler"]


class IdentityBatchSampler:
    """Yield batches of dataset indices: ``P = batch_size // num_instances`` identities x ``K`` instances.

    - Label ``-1`` (outliers / unlabeled) is never sampled.
    - Per identity an anchor is drawn, then ``K - 1`` more instances, preferring cameras other than the
      anchor's, then the anchor's camera, then (identity smaller than ``K``) repeats with replacement.
    - Identities are visited in a per-epoch random order; every batch holds distinct identities when
      enough exist (fewer than the global ``P`` identities: repeats with a warning; none: ValueError).
    - Deterministic: the order depends on ``(seed, epoch, pass)``, where ``pass`` counts iterations since
      the last :meth:`set_epoch` (so forgetting ``set_epoch`` still gives fresh batches).
    - DDP: all ranks draw the same global batch of ``world_size * P`` distinct identities and rank ``r``
      keeps identities ``[r*P, (r+1)*P)``, so ranks get disjoint identity shares.

    ``len()`` is ``num_batches`` (per rank). Use as ``DataLoader(ds, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        camids: Sequence[int] | np.ndarray,
        batch_size: int = 64,
        num_instances: int = 4,
        num_batches: int = 400,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_instances < 1:
            raise ValueError(f"num_instances must be >= 1, got {num_instances}")
        if batch_size < num_instances or batch_size % num_instances:
            raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of num_instances "
                             f"({num_instances})")
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.batch_size = int(batch_size)
        self.num_instances = int(num_instances)
        self.num_pids_per_batch = self.batch_size // self.num_instances
        self.num_batches = int(num_batches)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self._pass = 0
        self.set_labels(labels, camids)

    def set_labels(self, labels: Sequence[int] | np.ndarray, camids: Sequence[int] | np.ndarray) -> None:
        """Replace the (pseudo) labels and cameras, e.g. after re-clustering."""
        labels = np.asarray(labels)
        camids = np.asarray(camids)
        if labels.ndim != 1 or camids.shape != labels.shape:
            raise ValueError(f"labels and camids must be 1-D arrays of equal length, got shapes "
                             f"{labels.shape} and {camids.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        if labels.size and labels.min() < -1:
            raise ValueError(f"labels must be >= -1 (-1 = outlier), got min {labels.min()}")
        valid = np.flatnonzero(labels >= 0)
        if valid.size == 0:
            raise ValueError(f"no usable identities: all {labels.size} labels are -1 (or there are none)")
        order = valid[np.argsort(labels[valid], kind="stable")]
        pids, starts = np.unique(labels[order], return_index=True)
        self.labels, self.camids = labels, camids.astype(np.int64)
        self.pids = pids
        self._members = np.split(order, starts[1:])  # per identity: dataset indices
        needed = self.num_pids_per_batch * self.world_size
        if len(pids) < needed:
            warnings.warn(f"IdentityBatchSampler: only {len(pids)} usable identities for {needed} identities "
                          f"per global batch; identities will repeat within batches", stacklevel=2)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch so that the batches are reproducible (call before each epoch, also on resume)."""
        self.epoch = int(epoch)
        self._pass = 0

    def __len__(self) -> int:
        return self.num_batches

    @property
    def num_identities(self) -> int:
        """Number of usable identities (label >= 0)."""
        return len(self.pids)

    def _instances(self, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An anchor plus ``K - 1`` instances of one identity, preferring other cameras than the anchor's."""
        K = self.num_instances
        anchor = members[rng.integers(len(members))]
        if K == 1:
            return np.array([anchor])
        rest = members[members != anchor]
        cams = self.camids[rest]
        other = rest[(cams != self.camids[anchor]) | (cams < 0)]
        same = rest[(cams == self.camids[anchor]) & (cams >= 0)]
        chosen = rng.permutation(other)[: K - 1]
        if len(chosen) < K - 1:
            chosen = np.concatenate([chosen, rng.permutation(same)[: K - 1 - len(chosen)]])
        if len(chosen) < K - 1:
            chosen = np.concatenate([chosen, rng.choice(members, K - 1 - len(chosen), replace=True)])
        return np.concatenate([[anchor], chosen])

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, self._pass])
        self._pass += 1
        n_ids = len(self.pids)
        P, G = self.num_pids_per_batch, self.num_pids_per_batch * self.world_size
        queue = rng.permutation(n_ids)
        pos = 0
        for _ in range(self.num_batches):
            if n_ids >= G:
                if pos + G <= len(queue):
                    chosen = queue[pos:pos + G]
                    pos += G
                else:  # wrap: finish this pass over identities, then start a new one, no duplicates
                    head = queue[pos:]
                    nxt = rng.permutation(n_ids)
                    nxt = np.concatenate([nxt[~np.isin(nxt, head)], nxt[np.isin(nxt, head)]])
                    chosen = np.concatenate([head, nxt[: G - len(head)]])
                    queue, pos = nxt, G - len(head)
            else:
                chosen = np.concatenate([rng.permutation(n_ids), rng.choice(n_ids, G - n_ids, replace=True)])
            batch = [self._instances(self._members[i], rng) for i in chosen]
            yield np.concatenate(batch[self.rank * P:(self.rank + 1) * P]).tolist()
