"""IdentityBatchSampler: P x K structure, camera preference, determinism, DDP shares, small sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from scwm.data import IdentityBatchSampler


def _toy(n_ids: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Identities with 1..9 images on random cameras, plus some -1 outliers."""
    rng = np.random.default_rng(seed)
    labels, cams = [], []
    for pid in range(n_ids):
        n = int(rng.integers(1, 10))
        labels += [pid * 3 + 1] * n  # non-contiguous pseudo labels
        cams += rng.integers(0, 4, n).tolist()
    labels += [-1] * 15
    cams += [0] * 15
    perm = rng.permutation(len(labels))
    return np.array(labels)[perm], np.array(cams)[perm]


def _chunks(batch: list[int], k: int) -> list[list[int]]:
    return [batch[i:i + k] for i in range(0, len(batch), k)]


def test_pk_structure_and_no_outliers() -> None:
    labels, cams = _toy()
    s = IdentityBatchSampler(labels, cams, batch_size=16, num_instances=4, num_batches=30, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 30
    for b in batches:
        assert len(b) == 16 and all(isinstance(i, int) for i in b)
        ids = []
        for chunk in _chunks(b, 4):
            chunk_labels = set(labels[chunk].tolist())
            assert len(chunk_labels) == 1 and -1 not in chunk_labels
            ids.append(chunk_labels.pop())
            n_avail = int((labels == labels[chunk[0]]).sum())
            assert len(set(chunk)) == min(4, n_avail)  # distinct when possible, replacement otherwise
        assert len(set(ids)) == 4  # distinct identities within a batch
    # identities are visited in passes: the first 5 batches (5 x 4 = 20 ids) cover every identity once
    first = [labels[c[0]] for b in batches[:5] for c in _chunks(b, 4)]
    assert sorted(first) == sorted(set(labels[labels >= 0].tolist()))


def test_other_camera_preference() -> None:
    # every identity: 4 images on camera 0 and 4 on camera 1 -> the 3 companions of the anchor must all
    # come from the other camera (uniform sampling would give 4/7 of them)
    labels = np.repeat(np.arange(10), 8)
    cams = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 10)
    s = IdentityBatchSampler(labels, cams, batch_size=16, num_instances=4, num_batches=50, seed=0)
    other = [cams[c[0]] != cams[j] for b in s for c in _chunks(b, 4) for j in c[1:]]
    assert np.mean(other) == 1.0
    # only one other-camera image: it is always among the companions of a camera-0 anchor
    labels = np.repeat(np.arange(8), 6)
    cams = np.tile([0, 0, 0, 0, 0, 1], 8)
    s = IdentityBatchSampler(labels, cams, batch_size=16, num_instances=4, num_batches=50, seed=0)
    for b in s:
        for c in _chunks(b, 4):
            if cams[c[0]] == 0:
                assert (cams[c[1:]] == 1).sum() == 1


def test_determinism_and_set_epoch() -> None:
    labels, cams = _toy()
    a = IdentityBatchSampler(labels, cams, batch_size=16, num_batches=10, seed=7)
    b = IdentityBatchSampler(labels, cams, batch_size=16, num_batches=10, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    ea, eb = list(a), list(b)
    assert ea == eb
    assert list(a) != ea  # a second pass without set_epoch gives fresh batches
    a.set_epoch(4)
    assert list(a) != ea
    a.set_epoch(3)
    assert list(a) == ea  # resume reproducibility
    c = IdentityBatchSampler(labels, cams, batch_size=16, num_batches=10, seed=8)
    c.set_epoch(3)
    assert list(c) != ea


def test_ddp_ranks_get_disjoint_identity_shares() -> None:
    labels, cams = _toy(n_ids=30)
    ranks = [IdentityBatchSampler(labels, cams, batch_size=16, num_instances=4, num_batches=20, seed=2,
                                  rank=r, world_size=3) for r in range(3)]
    for r in ranks:
        r.set_epoch(1)
    per_rank = [list(r) for r in ranks]
    for step in range(20):
        shares = [set(labels[per_rank[r][step]].tolist()) for r in range(3)]
        assert all(len(sh) == 4 for sh in shares)
        assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])


def test_small_identity_counts() -> None:
    labels = np.array([0, 0, 1, 5, 5, 5, -1, -1])
    cams = np.array([0, 1, 0, 0, 1, 2, 0, 0])
    with pytest.warns(UserWarning, match="only 3 usable identities"):
        s = IdentityBatchSampler(labels, cams, batch_size=16, num_instances=4, num_batches=5)
    for b in s:
        assert len(b) == 16 and (labels[b] >= 0).all()
        assert set(labels[b].tolist()) == {0, 1, 5}  # all identities present, some repeated
        for c in _chunks(b, 4):
            assert len(set(labels[c].tolist())) == 1
    with pytest.raises(ValueError, match="no usable identities"):
        IdentityBatchSampler([-1, -1], [0, 1])
    with pytest.raises(ValueError, match="multiple of num_instances"):
        IdentityBatchSampler(labels, cams, batch_size=10, num_instances=4)
    with pytest.raises(ValueError, match="equal length"):
        IdentityBatchSampler(labels, cams[:3])


def test_set_labels_and_dataloader() -> None:
    labels, cams = _toy()
    s = IdentityBatchSampler(labels, cams, batch_size=8, num_instances=2, num_batches=4)
    new = np.where(labels >= 0, labels % 5, -1)  # re-clustered: 5 pseudo identities
    s.set_labels(new, cams)
    assert s.num_identities == 5
    ds = TensorDataset(torch.arange(len(labels)))
    loader = DataLoader(ds, batch_sampler=s)
    got = [batch[0] for batch in loader]
    assert len(got) == 4 and all(g.shape == (8,) for g in got)
    assert all((new[g.numpy()] >= 0).all() for g in got)
