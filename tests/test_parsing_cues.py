"""The alternative foreground cues (scwm/parsing/cues.py): against a per-image loop, and on a scene where the
feature norm is positional but the background model is not."""

from __future__ import annotations

import pytest
import torch

from scwm.parsing import binary_auc, within_position_auc
from scwm.parsing.cues import (
    attribute_evidence,
    background_model_distance,
    cross_camera_match,
    family_parts,
    first_component_cue,
    identity_activation_map,
    identity_directions,
    position_normalized_norm,
)


def _loop_background_distance(fmap: torch.Tensor, cams: list[int] | None) -> torch.Tensor:
    n = fmap.shape[0]
    cams = cams or [0] * n
    out = torch.empty(n, *fmap.shape[2:])
    for i in range(n):
        same = [j for j in range(n) if j != i and cams[j] == cams[i]] or [j for j in range(n) if j != i]
        for y in range(fmap.shape[2]):
            for x in range(fmap.shape[3]):
                ref = sum(fmap[j, :, y, x] / fmap[j, :, y, x].norm() for j in same) / len(same)
                v = fmap[i, :, y, x]
                out[i, y, x] = 1 - float(v @ ref) / float(v.norm() * ref.norm())
    return out


def test_background_distance_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(7, 5, 3, 2, generator=g)
    cams = [0, 0, 1, 1, 1, 2, 0]  # camera 2 has one image: it falls back to all other images
    got = background_model_distance(fmap, torch.tensor(cams))
    torch.testing.assert_close(got, _loop_background_distance(fmap, cams), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(background_model_distance(fmap), _loop_background_distance(fmap, None),
                               atol=1e-5, rtol=1e-5)


def test_position_normalized_norm_matches_loop() -> None:
    fmap = torch.randn(5, 4, 2, 3, generator=torch.Generator().manual_seed(1))
    norms = fmap.norm(dim=1)
    want = torch.stack([norms[i] / torch.cat([norms[:i], norms[i + 1:]]).mean(0) for i in range(5)])
    torch.testing.assert_close(position_normalized_norm(fmap), want)


def test_cues_remove_a_positional_norm_profile() -> None:
    """Background cells of each camera share one direction per position; body cells are random; the norm is a
    fixed centre-high profile whatever the cell shows: the norm ranks by position, the background model by
    content."""
    g = torch.Generator().manual_seed(2)
    n, c, h, w = 120, 16, 6, 4
    cams = torch.arange(n) % 3
    backdrop = torch.nn.functional.normalize(torch.randn(3, c, h, w, generator=g), dim=1)
    unit = backdrop[cams] + 0.3 * torch.randn(n, c, h, w, generator=g)
    body = torch.zeros(n, h, w, dtype=torch.bool)
    cols = torch.randint(0, w - 1, (n,), generator=g)  # a 2-column person at a random place
    body[torch.arange(n), :, cols] = True
    body[torch.arange(n), :, cols + 1] = True
    unit = torch.where(body[:, None], torch.randn(n, c, h, w, generator=g), unit)
    profile = torch.tensor([1.0, 3.0, 3.0, 1.0]).view(1, 1, 1, w).expand(n, 1, h, w)
    fmap = torch.nn.functional.normalize(unit, dim=1) * profile
    norm_auc_within, _ = within_position_auc(fmap.norm(dim=1), body)
    assert norm_auc_within == pytest.approx(0.5, abs=0.05)  # the norm knows only the position (rounding ranks)
    assert binary_auc(position_normalized_norm(fmap), body) == pytest.approx(0.5, abs=0.05)
    cam_dist = background_model_distance(fmap, cams)
    assert binary_auc(cam_dist, body) > 0.95
    assert within_position_auc(cam_dist, body)[0] > 0.95
    # without camera ids the three backdrops average out: weaker, still above chance
    assert 0.6 < binary_auc(background_model_distance(fmap), body) < binary_auc(cam_dist, body)


def test_cues_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="N, C, h, w"):
        background_model_distance(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="one entry per image"):
        background_model_distance(torch.randn(3, 2, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least 2"):
        position_normalized_norm(torch.randn(1, 2, 2, 2))


def test_cross_camera_match_matches_loop() -> None:
    g = torch.Generator().manual_seed(4)
    fmap = torch.randn(8, 6, 3, 2, generator=g)
    ids = [0, 0, 0, 1, 1, 2, -1, -1]  # identity 2 and the outliers have no other view
    cams = [0, 1, 1, 0, 0, 1, 0, 1]  # identity 1 is seen by one camera only: no cross-camera view either
    got, has = cross_camera_match(fmap, torch.tensor(ids), torch.tensor(cams), chunk=3)
    unit = torch.nn.functional.normalize(fmap, dim=1).flatten(2)  # (N, C, P)
    want = torch.zeros(8, 3 * 2)
    for a in range(8):
        others = [b for b in range(8) if b != a and ids[b] == ids[a] and ids[a] >= 0 and cams[b] != cams[a]]
        for b in others:
            want[a] += (unit[a].T @ unit[b]).amax(1) / len(others)
    assert has.tolist() == [True, True, True, False, False, False, False, False]
    torch.testing.assert_close(got, want.view(8, 3, 2))
    with pytest.raises(ValueError, match="one entry per image"):
        cross_camera_match(fmap, torch.tensor(ids[:-1]), torch.tensor(cams))


def test_cross_camera_match_finds_the_person_on_changing_backdrops() -> None:
    """Each identity wears one set of cell features wherever it stands; each camera has its own backdrop: the
    cells that recur across the identity's cameras are the body, at every position."""
    g = torch.Generator().manual_seed(5)
    n_ids, cams_per_id, c, h, w = 20, 3, 16, 6, 4
    ids = torch.arange(n_ids).repeat_interleave(cams_per_id)
    cams = torch.arange(cams_per_id).repeat(n_ids)
    wear = torch.randn(n_ids, c, h, generator=g)  # one feature per body row of each identity
    backdrop = torch.randn(cams_per_id, c, h, w, generator=g)
    n = ids.numel()
    fmap = backdrop[cams] + 0.1 * torch.randn(n, c, h, w, generator=g)
    cols = torch.randint(0, w, (n,), generator=g)  # a one-column person at a random place
    body = torch.zeros(n, h, w, dtype=torch.bool)
    body[torch.arange(n), :, cols] = True
    fmap = torch.where(body[:, None], wear[ids][..., None].expand(-1, -1, -1, w), fmap)
    cue, has = cross_camera_match(fmap, ids, cams)
    assert has.all()
    within, _ = within_position_auc(cue, body)
    assert within > 0.95


def test_identity_activation_map_matches_loop() -> None:
    g = torch.Generator().manual_seed(6)
    feats = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=1)
    ids = [3, 3, 1, 1, 1, -1, 8]
    cells = torch.randn(7, 5, 2, 2, generator=g)
    centres = {y: torch.nn.functional.normalize(sum(feats[i] for i in range(7) if ids[i] == y), dim=0)
               for y in set(ids) if y >= 0}
    mean = sum(centres.values()) / len(centres)
    want = torch.stack([torch.einsum("chw,c->hw", cells[i], (centres[ids[i]] if ids[i] >= 0 else feats[i]) - mean)
                        for i in range(7)])
    got = identity_activation_map(cells, identity_directions(feats, torch.tensor(ids)))
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="one entry per image"):
        identity_directions(feats, torch.tensor(ids[:-1]))
    with pytest.raises(ValueError, match="directions"):
        identity_activation_map(cells, feats[:, :4])


def test_identity_activation_map_finds_what_tells_identities_apart() -> None:
    """Every image shows one backdrop shared by all identities and its identity's own features on the body cells:
    the embedding (the mean of the cells) differs between identities only through the body, and the CAM ranks the
    body above the backdrop at every position."""
    g = torch.Generator().manual_seed(7)
    n_ids, per_id, c, h, w = 12, 4, 16, 6, 4
    ids = torch.arange(n_ids).repeat_interleave(per_id)
    n = ids.numel()
    cells = torch.randn(1, c, h, w, generator=g).expand(n, -1, -1, -1) + 0.1 * torch.randn(n, c, h, w, generator=g)
    cols = torch.randint(0, w, (n,), generator=g)
    body = torch.zeros(n, h, w, dtype=torch.bool)
    body[torch.arange(n), :, cols] = True
    wear = torch.randn(n_ids, c, 1, 1, generator=g).expand(-1, -1, h, 1)
    cells = torch.where(body[:, None], wear[ids].expand(-1, -1, -1, w), cells)
    feats = torch.nn.functional.normalize(cells.mean((2, 3)), dim=1)
    cam = identity_activation_map(cells, identity_directions(feats, ids))
    assert within_position_auc(cam, body)[0] > 0.95


def test_attribute_evidence_matches_loop_and_averages_to_the_logit_gap() -> None:
    g = torch.Generator().manual_seed(1)
    sizes = (3, 2, 4)
    z = torch.randn(5, sum(sizes), 4, 2, generator=g)
    got = attribute_evidence(z, sizes)
    assert got.shape == (5, 3, 4, 2)
    start = 0
    for gi, k in enumerate(sizes):
        for n in range(5):
            zg = z[n, start:start + k]
            best = int(zg.mean((1, 2)).argmax())
            torch.testing.assert_close(got[n, gi], zg[best] - zg.mean(0))
            image = zg.mean((1, 2))  # a head on the mean of the cells: the image's logits
            assert float(got[n, gi].mean()) == pytest.approx(float(image[best] - image.mean()), abs=1e-5)
        start += k
    with pytest.raises(ValueError, match="groups"):
        attribute_evidence(z, (3, 2))


def test_family_parts_follows_the_family_with_the_most_evidence() -> None:
    ev = torch.zeros(2, 3, 4, 2)
    ev[:, 0, :2] = 2.0  # group 0 (family "head") on the top rows
    ev[:, 1, 2:] = 1.0  # groups 1 and 2 (family "legs") on the bottom rows
    ev[:, 2, 2:] = 1.0
    fg = torch.ones(2, 4, 2, dtype=torch.bool)
    fg[1, 0, 0] = False
    labels = family_parts(ev, [[0], [1, 2]], fg)
    assert labels[:, :2].eq(0).sum() == 2 * 4 - 1 and labels[:, 2:].eq(1).all()
    assert int(labels[1, 0, 0]) == 2  # background = len(families)
    assert int(family_parts(ev, [[0], [1, 2]], fg, background=5)[1, 0, 0]) == 5  # a run with more parts
    with pytest.raises(ValueError, match="collides"):
        family_parts(ev, [[0], [1, 2]], fg, background=1)
    with pytest.raises(ValueError, match="family"):
        family_parts(ev, [[0], []], fg)


def test_first_component_cue_is_the_principal_axis_signed_by_the_norm() -> None:
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(2)
    n, c, h, w = 30, 6, 4, 3
    body = torch.rand(n, h, w, generator=g) < 0.4
    base = torch.randn(c, generator=g)
    fg_dir = torch.randn(c, generator=g)
    fmap = (base[None, :, None, None] + 0.1 * torch.randn(n, c, h, w, generator=g)
            + 3.0 * body[:, None].float() * fg_dir[None, :, None, None])
    fmap = fmap * (1 + body[:, None].float())  # the body also has the larger norm
    got = first_component_cue(fmap)
    unit = torch.nn.functional.normalize(fmap.permute(0, 2, 3, 1), dim=-1).reshape(-1, c).numpy()
    ref = torch.from_numpy(PCA(1).fit_transform(unit)[:, 0]).float().view(n, h, w)
    corr = torch.corrcoef(torch.stack([got.flatten(), ref.flatten()]))[0, 1]
    assert abs(float(corr)) > 0.999
    assert binary_auc(got, body) > 0.99  # signed so that the larger-norm side is foreground
    assert binary_auc(-first_component_cue(fmap), body) < 0.01
