"""Heat-diffusion (bone heat) prior on small generated meshes."""
from __future__ import annotations

import numpy as np
import pytest

from backend.evaluation.baselines import MethodUnavailable, make_method
from backend.features.heat import (clean_faces, cotangent_laplacian, face_average_normals, facing_distances,
                                  heat_prior_weights, heat_weights)
from backend.rig import make_rig
from conftest import make_capsule_chain


def tube(p0, p1, radius, segments=12, rings=10):
    """Closed capsule mesh around p0 -> p1: ((V, 3) float64, (F, 3) int64)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    c = make_capsule_chain(1, length=length, radius=radius, segments=segments, rings=rings, cap_rings=3,
                           with_weights=False)
    z = axis / length
    x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    return c.vertices.astype(float) @ np.stack([x, np.cross(z, x), z]) + p0, c.faces.astype(np.int64)


def merge(*meshes):
    """Concatenate meshes: ((V, 3), (F, 3), (V,) part index)."""
    off = np.cumsum([0] + [len(v) for v, _ in meshes])
    return (np.concatenate([v for v, _ in meshes]),
            np.concatenate([f + o for (_, f), o in zip(meshes, off)]),
            np.concatenate([np.full(len(v), i) for i, (v, _) in enumerate(meshes)]))


def test_rows_sum_to_one_and_non_deform_column_is_zero():
    rig = make_capsule_chain(3, with_weights=False)
    rig.is_deform[1] = False
    w = heat_prior_weights(rig)
    assert w.shape == (rig.num_vertices, 3) and w.dtype == np.float32
    assert (w >= 0).all() and (w[:, 1] == 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)


def test_two_bone_capsule_blends_smoothly_and_monotonically_along_the_axis():
    rig = make_capsule_chain(2, length=3.0, radius=0.3, segments=16, rings=30, with_weights=False)
    w = heat_prior_weights(rig, c=1.0, prune=0.0)  # Baran & Popovic's c, no pruning: the widest blend
    z = rig.vertices[:, 2]
    zs = np.unique(np.round(z, 5))
    ring_w = np.array([w[np.abs(z - q) < 1e-4, 0].mean() for q in zs])
    assert (np.diff(ring_w) <= 1e-4).all()  # bone 0's weight falls with z
    assert ring_w[0] > 0.98 and ring_w[-1] < 0.02
    # the geometry is symmetric about z = 1.5: an even blend at the joint, mirrored around it
    mid = np.abs(z - 1.5) < 1e-4
    assert abs(w[mid, 0].mean() - 0.5) < 0.05
    np.testing.assert_allclose(ring_w, 1.0 - ring_w[::-1], atol=0.05)
    # smooth: no ring-to-ring jump bigger than a fifth of the whole blend
    assert np.abs(np.diff(ring_w)).max() < 0.2
    # a real blend region, not a step: several rings hold intermediate weights
    assert ((ring_w > 0.1) & (ring_w < 0.9)).sum() >= 4
    # the defaults (larger c, small weights pruned) blend more tightly, still monotone and even
    wd = heat_prior_weights(rig)
    ring_d = np.array([wd[np.abs(z - q) < 1e-4, 0].mean() for q in zs])
    assert (np.diff(ring_d) <= 1e-4).all() and abs(wd[mid, 0].mean() - 0.5) < 0.05
    assert ((ring_d > 0.1) & (ring_d < 0.9)).sum() < ((ring_w > 0.1) & (ring_w < 0.9)).sum()


def test_separate_eye_gets_the_head_bone():
    body = tube([0, 0, -1.0], [0, 0, 0], 0.3)
    head = tube([0, 0, 0], [0, 0, 0.6], 0.3)
    eye = tube([0.42, 0, 0.549], [0.42, 0, 0.551], 0.07, segments=8, rings=2)
    v, f, part = merge(body, head, eye)
    rig = make_rig(v, f, [[0, 0, -1.0], [0, 0, 0.1]], [-1, 0], tails=[[0, 0, 0.0], [0, 0, 0.6]])
    w = heat_prior_weights(rig)
    assert (w[part == 2].argmax(axis=1) == 1).all()
    assert w[part == 2, 1].min() > 0.9


def test_two_legs_do_not_leak_across_the_gap():
    r = 0.12
    v, f, part = merge(tube([-0.2, 0, 0], [-0.2, 0, 1], r), tube([0.2, 0, 0], [0.2, 0, 1], r),
                       tube([-0.2, 0, 1], [0.2, 0, 1], r))
    rig = make_rig(v, f, [[-0.2, 0, 1.0], [0.2, 0, 1.0]], [-1, -1], tails=[[-0.2, 0, 0.05], [0.2, 0, 0.05]])
    w = heat_prior_weights(rig)
    low = v[:, 2] < 0.5
    assert w[(part == 0) & low, 1].max() < 0.01
    assert w[(part == 1) & low, 0].max() < 0.01


def test_geodesic_visibility_keeps_a_close_arm_off_the_body():
    # a thick body on bone 0 and a thin arm hanging beside it on bone 1, joined at the shoulder;
    # body vertices facing the arm are nearer the arm bone in a straight line (0.15 vs 0.3)
    body = tube([0, 0, 0], [0, 0, 1.4], 0.3, segments=16, rings=14)
    shoulder = tube([0, 0, 1.3], [0.45, 0, 1.3], 0.06)
    arm = tube([0.45, 0, 1.3], [0.45, 0, 0.1], 0.05, rings=12)
    v, f, part = merge(body, shoulder, arm)
    rig = make_rig(v, f, [[0, 0, 0], [0.45, 0, 1.2]], [-1, 0], tails=[[0, 0, 1.4], [0.45, 0, 0.1]])
    facing = (part == 0) & (v[:, 0] > 0.25) & (v[:, 2] > 0.2) & (v[:, 2] < 0.7)
    assert facing.sum() >= 10
    w_geo = heat_prior_weights(rig, visibility="geodesic")
    w_eu = heat_prior_weights(rig, visibility="euclidean", facing=False)
    assert w_geo[facing, 0].min() > 0.85 and w_geo[facing, 0].mean() > 0.93
    assert w_eu[facing, 1].mean() > 0.5  # without the visibility test the arm grabs the body's side
    np.testing.assert_allclose(w_geo.sum(axis=1), 1.0, atol=1e-5)


def test_facing_distances_lengthen_bones_behind_the_surface():
    # one vertex of a triangle in the plane z = 0 (normal +z); bones above and below it
    v = np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]])
    f = np.array([[0, 1, 2]])
    heads = np.array([[0.0, 0, -1.0], [0.0, 0, 2.0], [-3.0, 0, 0]])
    tails = np.array([[0.0, 0, -2.0], [0.0, 0, 3.0], [-3.0, 1e-9, 0]])
    d = facing_distances(v, f, heads, tails)
    # below (normal points away from it): cos = 1; above (normal points at it): cos = -1; beside: cos = 0
    np.testing.assert_allclose(d[0], [1.0 / 1.0005, 2.0 / 0.0005, 3.0 / 0.5005], rtol=1e-5)


def test_face_average_normals_ignore_face_size():
    # vertex 0 is in a big triangle of the plane z = 0 (normal +z) and a tiny one of x = 0 (normal +x)
    v = np.array([[0.0, 0, 0], [10.0, 0, 0], [0.0, 10, 0], [0.0, 0.1, 0], [0.0, 0, 0.1], [5.0, 5, 5]])
    f = np.array([[0, 1, 2], [0, 3, 4]])
    n = face_average_normals(v, f)
    np.testing.assert_allclose(n[0], [1 / np.sqrt(2), 0, 1 / np.sqrt(2)], atol=1e-12)
    np.testing.assert_allclose(n[1], [0, 0, 1], atol=1e-12)
    assert (n[5] == 0).all()  # in no face


def test_deterministic_and_scale_free():
    rig = make_capsule_chain(3, with_weights=False)
    a = heat_prior_weights(rig, visibility="geodesic")
    assert np.array_equal(a, heat_prior_weights(rig, visibility="geodesic"))
    big = make_rig(rig.vertices * 37.0 + 5.0, rig.faces, rig.joints * 37.0 + 5.0, rig.parents,
                   tails=rig.tails * 37.0 + 5.0)
    np.testing.assert_allclose(heat_prior_weights(big, visibility="geodesic"), a, atol=2e-3)


def test_messy_mesh_still_weights_every_vertex():
    rig = make_capsule_chain(2, length=2.0, radius=0.3, with_weights=False)
    v, f = rig.vertices.astype(float), rig.faces.astype(np.int64)
    n = len(v)
    extra = np.array([[0.6, 0.0, 0.3], [0.6, 0.3, 0.3], [0.0, 0.0, 1.9], [0.0, 0.0, 1.9], [0.0, 0.0, 0.1]])
    v = np.concatenate([v, extra])
    a, b = f[0, 0], f[0, 1]
    f = np.concatenate([f, f[:20],  # duplicate faces
                        [[a, b, n], [b, a, n + 1]],  # non-manifold fins on one edge
                        [[n + 2, n + 3, f[-1, 0]]],  # zero-area triangle (two coincident vertices)
                        [[a, a, b]]])  # repeated index
    # vertex n + 4 is isolated (in no face)
    messy = make_rig(v, f, rig.joints, rig.parents, tails=rig.tails)
    w = heat_prior_weights(messy)
    assert np.isfinite(w).all() and (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert w[n + 4, 0] > 0.99  # the isolated vertex keeps its nearest bone
    assert w[v[:, 2] < 0.3, 0].min() > 0.9 and w[v[:, 2] > 1.7, 1].min() > 0.9


def test_cotangent_laplacian_known_values():
    # equilateral triangle: every angle has cot 60 deg = 1/sqrt(3)
    tri = np.array([[0.0, 0, 0], [1.0, 0, 0], [0.5, np.sqrt(3) / 2, 0]])
    L, mass = cotangent_laplacian(tri, np.array([[0, 1, 2]]), uniform=0.0)
    off = -0.5 / np.sqrt(3)
    np.testing.assert_allclose(L.toarray(), [[-2 * off, off, off], [off, -2 * off, off], [off, off, -2 * off]],
                               atol=1e-12)
    np.testing.assert_allclose(mass, np.sqrt(3) / 4 / 3)
    # on a flat, jittered triangular lattice (all angles acute, nothing clamped) the cotangent
    # Laplacian of a linear function is 0 at interior vertices
    rng = np.random.default_rng(1)
    n = 8
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    xy = np.stack([i + 0.5 * (j % 2), j * np.sqrt(3) / 2], -1).reshape(-1, 2).astype(float)
    inner = ((i > 0) & (i < n - 1) & (j > 0) & (j < n - 1)).ravel()
    xy[inner] += rng.uniform(-0.05, 0.05, (int(inner.sum()), 2))
    v = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
    q = np.arange(n * n).reshape(n, n)
    faces = []
    for r in range(n - 1):  # row r -> r + 1 along j; odd rows are shifted right by half a step
        a, b = q[:-1, r], q[1:, r]
        c, d = q[:-1, r + 1], q[1:, r + 1]
        if r % 2 == 0:
            faces += [np.stack([a, b, c], 1), np.stack([b, d, c], 1)]
        else:
            faces += [np.stack([a, b, d], 1), np.stack([a, d, c], 1)]
    faces = np.concatenate(faces)
    L, _ = cotangent_laplacian(v, faces, uniform=0.0)
    lin = 2.0 * v[:, 0] - 3.0 * v[:, 1] + 1.0
    np.testing.assert_allclose((L @ lin)[inner], 0.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(L.sum(axis=1)).ravel(), 0.0, atol=1e-12)
    assert (L - L.T).count_nonzero() == 0


def test_clean_faces_drops_degenerate_and_duplicate_triangles():
    f = np.array([[0, 1, 2], [2, 0, 1], [1, 0, 2], [0, 0, 3], [1, 2, 3]])
    np.testing.assert_array_equal(clean_faces(f, 4), [[0, 1, 2], [1, 2, 3]])
    with pytest.raises(ValueError):
        clean_faces(f, 3)


def test_bad_arguments_and_registry():
    rig = make_capsule_chain(2, with_weights=False)
    with pytest.raises(ValueError):
        heat_weights(rig.vertices, rig.faces, rig.joints, rig.tails, visibility="rays")
    with pytest.raises(ValueError):
        heat_weights(rig.vertices, rig.faces, rig.joints, rig.tails, c=0.0)
    label, fn = make_method("heat:c=0.5,visibility=euclidean")
    assert label == "heat:c=0.5,visibility=euclidean"
    np.testing.assert_allclose(fn(rig), heat_prior_weights(rig, c=0.5, visibility="euclidean"))
    with pytest.raises(MethodUnavailable):
        make_method("heat:visibility=rays")
    with pytest.raises(MethodUnavailable):
        make_method("heat:c=abc")


def test_reused_geodesic_candidates_give_the_same_weights():
    """heat_weights(geodesic=(cand, dist)) equals the weights with its own geodesic solve."""
    from backend.features.frame import canonical_frame
    from backend.features.geodesic import geodesic_bone_distances

    rig = make_capsule_chain(4, with_weights=False)
    fr = canonical_frame(rig)
    v, h, t = fr.to_canonical(rig.vertices), fr.to_canonical(rig.joints), fr.to_canonical(rig.tails)
    own = heat_weights(v, rig.faces, h, t, prune=0.0)
    geo = geodesic_bone_distances(v, rig.faces, h, t, 8, 64)
    np.testing.assert_array_equal(heat_weights(v, rig.faces, h, t, prune=0.0, geodesic=geo), own)
