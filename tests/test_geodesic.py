"""Volumetric geodesic prior: voxelisation, distances and weights on generated meshes."""
from __future__ import annotations

import numpy as np
import pytest

from backend.features.geodesic import (
    geodesic_bone_distances,
    geodesic_prior_weights,
    geodesic_weights,
)
from backend.features.geometry import point_segment_distance
from backend.features.voxel import make_grid, voxelize
from backend.rig import make_rig
from conftest import make_capsule_chain


def capsule(p0, p1, radius, segments=16, rings=12):
    """Closed capsule mesh around the segment p0 -> p1: ((V, 3), (F, 3))."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    c = make_capsule_chain(1, length=length, radius=radius, segments=segments, rings=rings, with_weights=False)
    z = axis / length
    x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    v = c.vertices.astype(float) @ np.stack([x, y, z]) + p0
    return v, c.faces.astype(np.int64)


def uv_sphere(center, radius, n=12):
    return capsule(np.asarray(center) - [0, 0, 1e-3], np.asarray(center) + [0, 0, 1e-3], radius, n, 2)


def box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    v = lo + corners * (hi - lo)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def merge(*meshes):
    vs, fs, parts, off = [], [], [], 0
    for p, (v, f) in enumerate(meshes):
        vs.append(v)
        fs.append(f + off)
        parts.append(np.full(len(v), p))
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(parts)


def test_two_legs_do_not_leak_across_the_gap():
    r = 0.12
    v, f, part = merge(capsule([-0.2, 0, 0], [-0.2, 0, 1], r), capsule([0.2, 0, 0], [0.2, 0, 1], r),
                       capsule([-0.2, 0, 1], [0.2, 0, 1], r))
    heads = np.array([[-0.2, 0, 1.0], [0.2, 0, 1.0]])
    tails = np.array([[-0.2, 0, 0.05], [0.2, 0, 0.05]])
    rig = make_rig(v, f, heads, [-1, -1], tails=tails)
    w = geodesic_prior_weights(rig, k=2, falloff=4.0)  # a soft falloff, where leaks would show
    lower_right = (part == 1) & (v[:, 2] < 0.5)
    lower_left = (part == 0) & (v[:, 2] < 0.5)
    assert w[lower_right, 0].max() < 0.01
    assert w[lower_left, 1].max() < 0.01
    # straight-line distance would leak: the same falloff on Euclidean distances gives more
    eu, _ = point_segment_distance(v, heads, tails)
    assert geodesic_weights(eu, falloff=4.0)[lower_right, 0].max() > 0.02
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)


def test_separate_eye_gets_the_head_bone():
    body = capsule([0, 0, -1.0], [0, 0, 0], 0.3)
    head = capsule([0, 0, 0], [0, 0, 0.6], 0.3)
    eye = uv_sphere([0.42, 0, 0.55], 0.07)
    v, f, part = merge(body, head, eye)
    joints = np.array([[0, 0, -1.0], [0, 0, 0.1]])
    tails = np.array([[0, 0, 0.0], [0, 0, 0.6]])
    rig = make_rig(v, f, joints, [-1, 0], tails=tails)
    w = geodesic_prior_weights(rig)
    eye_w = w[part == 2]
    assert (eye_w.argmax(axis=1) == 1).all()
    assert eye_w[:, 1].min() > 0.85
    assert (w.sum(axis=1) > 0.999).all()


def test_hole_and_non_manifold_edge_still_weight_every_vertex():
    rig = make_capsule_chain(2, length=2.0, radius=0.3, with_weights=False)
    v, f = rig.vertices.astype(float), rig.faces.astype(np.int64)
    # delete a band of faces around the middle (a hole), add two fins on one edge (non-manifold)
    centroid_z = v[f].mean(axis=1)[:, 2]
    hole = (np.abs(centroid_z - 1.0) < 0.1) & (v[f].mean(axis=1)[:, 0] > 0)
    f = f[~hole]
    a, b = f[0, 0], f[0, 1]
    extra = np.array([[0.6, 0.0, 0.3], [0.6, 0.3, 0.3]])
    v = np.concatenate([v, extra])
    f = np.concatenate([f, [[a, b, len(v) - 2], [b, a, len(v) - 1]]])
    holey = make_rig(v, f, rig.joints, rig.parents, tails=rig.tails)
    w = geodesic_prior_weights(holey, k=2)
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    # still a solid: bottom vertices belong to bone 0, top ones to bone 1
    assert w[v[:, 2] < 0.3, 0].min() > 0.9
    assert w[v[:, 2] > 1.7, 1].min() > 0.9


def test_voxelised_volume_with_and_without_a_hole():
    rig = make_capsule_chain(1, length=1.0, radius=0.4, segments=24, rings=8, with_weights=False)
    v, f = rig.vertices.astype(float), rig.faces.astype(np.int64)
    grid = make_grid(v, 48)
    solid, shell = voxelize(v, f, grid)
    exact = np.pi * 0.4 ** 2 * 1.0 + 4 / 3 * np.pi * 0.4 ** 3
    vol = solid.sum() * grid.h ** 3
    assert 0.9 * exact < vol < 1.2 * exact  # the shell adds about half a voxel all round
    assert shell.sum() < solid.sum()
    top = v[f].mean(axis=1)[:, 2] > 1.2  # remove the whole top cap: a big hole
    holey, _ = voxelize(v, f[~top], grid)
    assert abs(int(holey.sum()) - int(solid.sum())) < 0.05 * solid.sum()


def test_rigid_robot_arm_of_two_separate_boxes():
    # a gap of ~3 voxels between the parts; the second joint sits in the gap
    v, f, part = merge(box([0, -0.15, -0.15], [1.0, 0.15, 0.15]), box([1.1, -0.15, -0.15], [2.0, 0.15, 0.15]))
    joints = np.array([[0.0, 0, 0], [1.05, 0, 0]])
    tails = np.array([[1.0, 0, 0], [2.0, 0, 0]])
    rig = make_rig(v, f, joints, [-1, 0], tails=tails)
    w = geodesic_prior_weights(rig)
    assert w[part == 0, 0].min() > 0.98
    assert w[part == 1, 1].min() > 0.98


def test_distances_known_values_and_determinism():
    rig = make_capsule_chain(3, length=3.0, radius=0.3, with_weights=False)
    v = rig.vertices / 2.0
    heads, tails = rig.joints / 2.0, rig.tails / 2.0
    cand, dist = geodesic_bone_distances(v, rig.faces, heads, tails, k=2, resolution=64)
    assert cand.shape == dist.shape == (len(v), 2) and cand.dtype == np.int64 and dist.dtype == np.float32
    assert (np.diff(dist, axis=1) >= 0).all()
    # on a straight convex tube the geodesic is the straight line: match the segment distance
    eu, _ = point_segment_distance(v, heads, tails)
    near = np.take_along_axis(eu, cand[:, :1], axis=1)[:, 0]
    h = 1.8 / 64
    # seeds enter at their exact distance and grid steps are straight: never an underestimate,
    # and the 26-neighbour metric plus the vertex-to-voxel offset add less than two voxels
    assert (dist[:, 0] >= near - 1e-5).all()
    assert (dist[:, 0] - near).max() < 2.0 * h
    assert (cand[:, 0] == eu.argmin(axis=1)).mean() > 0.95
    cand2, dist2 = geodesic_bone_distances(v, rig.faces, heads, tails, k=2, resolution=64)
    assert np.array_equal(cand, cand2) and np.array_equal(dist, dist2)
    # K is capped by the number of bones
    c3, _ = geodesic_bone_distances(v, rig.faces, heads, tails, k=10, resolution=32)
    assert c3.shape == (len(v), 3) and (np.sort(c3, axis=1) == [0, 1, 2]).all()


def test_geodesic_weights_falloff():
    w = geodesic_weights(np.array([[1.0, 1.0], [1.0, 2.0], [0.0, 1.0]]), falloff=4.0)
    np.testing.assert_allclose(w[0], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(w[1], [16 / 17, 1 / 17], atol=1e-6)
    assert w[2, 0] > 0.999
    d = np.random.default_rng(0).uniform(0.1, 2.0, (50, 6))
    np.testing.assert_allclose(geodesic_weights(d), geodesic_weights(d * 37.0), atol=1e-6)
    np.testing.assert_allclose(geodesic_weights(d).sum(axis=1), 1.0, atol=1e-6)


def test_prior_has_zero_columns_for_non_deform_bones():
    rig = make_capsule_chain(3, with_weights=False)
    rig.is_deform[1] = False
    w = geodesic_prior_weights(rig, k=8)
    assert w.shape == (rig.num_vertices, 3) and w.dtype == np.float32
    assert (w[:, 1] == 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert (w >= 0).all()


def test_bad_bones_are_refused():
    with pytest.raises(ValueError):
        geodesic_bone_distances(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((0, 3)), np.zeros((0, 3)), 4)
