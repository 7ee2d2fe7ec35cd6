"""Training augmentation: identity at zero strength, exact LBS motion, consistency, seeding."""
from __future__ import annotations

import numpy as np
import pytest

from backend.features.augment import (AugmentConfig, augment_rig, axis_angle_matrix, pose_rig, remesh_rig,
                                      subdivide_rig)
from backend.rig import RigError, validate_rig
from conftest import make_capsule_chain

ZERO = AugmentConfig(noise_sigma=0, axis_scale=0, thickness=0, rotation_deg=0, translation_sigma=0,
                     label_smoothing=0)


def rigid_chain():
    """3-bone capsule chain whose vertices each belong to exactly one bone (nearest by height)."""
    rig = make_capsule_chain(3, length=3.0, with_weights=False)
    bone = np.clip(np.floor(rig.vertices[:, 2]), 0, 2).astype(int)
    w = np.eye(3, dtype=np.float32)[bone]
    return rig.with_weights(w)


def test_zero_strength_is_the_identity():
    rig = make_capsule_chain(3)
    out = augment_rig(rig, np.random.default_rng(0), ZERO)
    for name in ("vertices", "joints", "tails", "weights", "faces", "parents"):
        assert np.array_equal(getattr(out, name), getattr(rig, name)), name
    assert out is not rig


def test_rotating_one_bone_moves_its_vertices_by_the_known_amount():
    rig = rigid_chain()
    angle = np.deg2rad(5.0)
    rots = np.tile(np.eye(3), (3, 1, 1))
    rots[1] = axis_angle_matrix([1.0, 0.0, 0.0], angle)  # bone 1 (head at z=1) turns about x
    posed = pose_rig(rig, rots)
    v0, v1 = rig.vertices.astype(float), posed.vertices.astype(float)
    b1 = rig.weights[:, 1] == 1
    # a rotation about an axis through the head (0, 0, 1) along x: the distance to that axis is kept
    # and every point moves by the chord 2 r sin(angle / 2)
    r = np.linalg.norm(v0[b1][:, 1:] - [0.0, 1.0], axis=1)
    moved = np.linalg.norm(v1[b1] - v0[b1], axis=1)
    np.testing.assert_allclose(moved, 2 * r * np.sin(angle / 2), atol=1e-5)
    # bone 0 stays, bone 2 follows its parent rigidly: its head moves like a bone-1 point
    assert np.allclose(v1[rig.weights[:, 0] == 1], v0[rig.weights[:, 0] == 1])
    np.testing.assert_allclose(posed.joints[1], rig.joints[1], atol=1e-6)
    expected_head2 = rots[1] @ (rig.joints[2] - rig.joints[1]) + rig.joints[1]
    np.testing.assert_allclose(posed.joints[2], expected_head2, atol=1e-5)
    b2 = rig.weights[:, 2] == 1
    expected = (v0[b2] - rig.joints[1]) @ rots[1].T + rig.joints[1]
    np.testing.assert_allclose(v1[b2], expected, atol=1e-5)


def test_random_rotations_stay_within_five_degrees():
    rig = rigid_chain()
    cfg = AugmentConfig(noise_sigma=0, axis_scale=0, thickness=0, rotation_deg=5.0, translation_sigma=0,
                        label_smoothing=0)
    out = augment_rig(rig, np.random.default_rng(3), cfg)
    # bone lengths are kept by rotations
    np.testing.assert_allclose(np.linalg.norm(out.tails - out.joints, axis=1),
                               np.linalg.norm(rig.tails - rig.joints, axis=1), atol=1e-5)
    # the first bone turns at most 5 degrees: its tip moves by at most the chord of 5 degrees
    b0 = rig.weights[:, 0] == 1
    r = np.linalg.norm(rig.vertices[b0] - rig.joints[0], axis=1)
    moved = np.linalg.norm(out.vertices[b0] - rig.vertices[b0], axis=1)
    assert (moved <= 2 * r * np.sin(np.deg2rad(5.0) / 2) + 1e-5).all()
    assert moved.max() > 0


def test_full_augmentation_is_seeded_and_valid():
    rig = make_capsule_chain(3)
    a = augment_rig(rig, np.random.default_rng(7))
    b = augment_rig(rig, np.random.default_rng(7))
    c = augment_rig(rig, np.random.default_rng(8))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.vertices, c.vertices)
    validate_rig(a, require_weights=True)
    np.testing.assert_allclose(a.weights.sum(axis=1), 1.0, atol=1e-5)
    # modest changes: the mesh moves by a few percent of its size, weights stay close
    size = np.ptp(rig.vertices, axis=0).max()
    assert np.abs(a.vertices - rig.vertices).max() < 0.2 * size
    assert 0 < np.abs(a.weights - rig.weights).max() < 0.2


def test_thickness_scales_distance_to_the_bone():
    rig = rigid_chain()
    cfg = AugmentConfig(noise_sigma=0, axis_scale=0, thickness=0.3, rotation_deg=0, translation_sigma=0,
                        label_smoothing=0)
    out = augment_rig(rig, np.random.default_rng(1), cfg)
    mid = (rig.vertices[:, 2] > 1.2) & (rig.vertices[:, 2] < 1.8)  # bone 1's cylinder
    radius = np.linalg.norm(out.vertices[mid, :2], axis=1)
    assert np.ptp(radius) < 1e-5  # one factor for the whole bone
    assert 0.3 * 0.7 - 1e-5 <= radius[0] <= 0.3 * 1.3 + 1e-5
    np.testing.assert_allclose(out.vertices[mid, 2], rig.vertices[mid, 2], atol=1e-6)


def test_needs_weights():
    rig = make_capsule_chain(2, with_weights=False)
    with pytest.raises(RigError, match="weights"):
        augment_rig(rig, np.random.default_rng(0))


def _area(rig) -> float:
    v = rig.vertices.astype(np.float64)[rig.faces.astype(np.int64)]
    return float(0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())


def test_subdivision_keeps_the_surface_and_interpolates_weights():
    rig = make_capsule_chain(3)
    out = subdivide_rig(rig)
    edges = {tuple(sorted(e)) for f in rig.faces.tolist() for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert out.num_vertices == rig.num_vertices + len(edges)
    assert len(out.faces) == 4 * len(rig.faces)
    np.testing.assert_allclose(_area(out), _area(rig), rtol=1e-5)
    validate_rig(out, require_weights=True)
    assert np.array_equal(out.vertices[:rig.num_vertices], rig.vertices)
    # every new vertex is the midpoint of one original edge and carries the mean of its ends' weights
    a, b = np.array(sorted(edges)).T
    mids = 0.5 * (rig.vertices[a] + rig.vertices[b])
    new = out.vertices[rig.num_vertices:]
    order = np.lexsort(new.T)
    ref = np.lexsort(mids.T)
    np.testing.assert_allclose(new[order], mids[ref], atol=1e-6)
    np.testing.assert_allclose(out.weights[rig.num_vertices:][order],
                               0.5 * (rig.weights[a] + rig.weights[b])[ref], atol=1e-6)


def test_remesh_changes_density_within_its_bounds():
    rig = make_capsule_chain(3, segments=24, rings=40)
    sizes = set()
    for seed in range(8):
        out = remesh_rig(rig, np.random.default_rng(seed), max_vertices=10**6)
        validate_rig(out, require_weights=True)
        sizes.add(out.num_vertices)
        assert out.num_vertices > 2 * rig.num_vertices or out.num_vertices <= 0.7 * rig.num_vertices
    assert max(sizes) > 2 * rig.num_vertices and min(sizes) <= 0.7 * rig.num_vertices  # both ways drawn
    # no subdivision past the cap: only decimation is left
    for seed in range(4):
        remeshed = remesh_rig(rig, np.random.default_rng(seed), max_vertices=rig.num_vertices)
        assert remeshed.num_vertices < rig.num_vertices


def test_augmentation_with_remeshing_gives_a_consistent_rig():
    rig = make_capsule_chain(3)
    out = augment_rig(rig, np.random.default_rng(0), AugmentConfig(remesh=1.0))
    assert out.num_vertices != rig.num_vertices
    validate_rig(out, require_weights=True)
    np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, atol=1e-5)


def test_detaching_changes_only_the_hierarchy():
    """With ``detach`` some bones become roots of their own; the mesh, the skeleton's positions and
    the weights are what the same seed gives without it, and the shipped cache keys do not change."""
    from backend.features.cache import cache_key

    rig = make_capsule_chain(n_bones=8, segments=16)
    plain = augment_rig(rig, np.random.default_rng(3), AugmentConfig())
    cut = augment_rig(rig, np.random.default_rng(3), AugmentConfig(detach=0.5))
    validate_rig(cut)
    for name in ("vertices", "joints", "tails", "weights"):
        np.testing.assert_array_equal(getattr(cut, name), getattr(plain, name))
    changed = cut.parents != plain.parents
    assert changed.any() and (cut.parents[changed] == -1).all()
    assert (cut.parents[plain.parents < 0] == -1).all()  # the old root stays a root
    every = augment_rig(rig, np.random.default_rng(3), AugmentConfig(detach=1.0))
    assert (every.parents == -1).all()
    assert cache_key({"a": AugmentConfig(remesh=0.5)}) != cache_key({"a": AugmentConfig(remesh=0.5, detach=0.1)})
    from backend.features.cache import key_fields

    assert "detach" not in key_fields(AugmentConfig(remesh=0.5))  # caches made before the option stay valid


def test_detach_copies_leaves_some_copies_whole():
    """``detach_copies`` < 1 detaches only that share of the copies (the others keep every parent
    link), and the geometry and weights are what the same seed gives without detaching."""
    from backend.features.cache import key_fields

    rig = make_capsule_chain(n_bones=8, segments=16)
    whole = [bool((augment_rig(rig, np.random.default_rng(s), AugmentConfig(detach=1.0, detach_copies=0.5)).parents
                   == rig.parents).all()) for s in range(40)]
    assert 8 <= sum(whole) <= 32  # about half of the copies keep the hierarchy
    none = augment_rig(rig, np.random.default_rng(5), AugmentConfig(detach=1.0, detach_copies=0.0))
    np.testing.assert_array_equal(none.parents, rig.parents)
    half = augment_rig(rig, np.random.default_rng(5), AugmentConfig(detach=0.5, detach_copies=0.5))
    plain = augment_rig(rig, np.random.default_rng(5), AugmentConfig())
    for name in ("vertices", "joints", "tails", "weights"):  # the extra draw comes after every other step
        np.testing.assert_array_equal(getattr(half, name), getattr(plain, name))
    assert "detach_copies" not in key_fields(AugmentConfig(detach=0.5))
    assert "detach_copies" in key_fields(AugmentConfig(detach=0.5, detach_copies=0.5))
