"""Simplification of big meshes and the transfer of weights back to every vertex."""
from __future__ import annotations

import numpy as np

from backend.features.simplify import mesh_components, simplify_rig, transfer_to_rig, transfer_weights
from backend.rig import make_rig
from conftest import make_capsule_chain


def smooth_field(p: np.ndarray) -> np.ndarray:
    """(N, 3) points -> (N, 3) weights, a smooth function of height (softmax of three bumps)."""
    centres = np.array([0.5, 1.5, 2.5])
    logits = -((p[:, 2:3] - centres[None]) ** 2) / 0.5
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def body_with_button():
    """Dense capsule (~12k vertices) plus a separate tiny 'button' mesh (4 vertices) beside it."""
    rig = make_capsule_chain(3, length=3.0, radius=0.3, segments=64, rings=180, with_weights=False)
    v = rig.vertices.astype(np.float64)
    button = np.array([[0.32, 0, 1.0], [0.34, 0, 1.0], [0.32, 0.02, 1.0], [0.32, 0, 1.02]])
    bf = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]) + len(v)
    verts = np.concatenate([v, button])
    faces = np.concatenate([rig.faces, bf])
    w = smooth_field(verts)
    w[len(v):] = [0.0, 0.0, 1.0]  # the button follows bone 2 although it sits at bone 1's height
    return make_rig(verts, faces, rig.joints, rig.parents, tails=rig.tails, weights=w)


def test_below_budget_is_untouched():
    rig = make_capsule_chain(2)
    small, index_map = simplify_rig(rig, budget=10_000)
    assert small is rig and np.array_equal(index_map, np.arange(rig.num_vertices))


def test_simplify_respects_budget_and_keeps_small_parts():
    rig = body_with_button()
    labels = mesh_components(rig.num_vertices, rig.faces)
    assert labels.max() == 1
    small, index_map = simplify_rig(rig, budget=2000)
    assert 1000 < small.num_vertices <= 2000
    assert np.array_equal(small.vertices, rig.vertices[index_map])
    assert np.array_equal(small.weights, rig.weights[index_map])
    assert (labels[index_map] == 1).any()  # the button is represented
    assert small.faces.max() < small.num_vertices and len(small.faces) > 0.5 * small.num_vertices
    assert len(np.unique(index_map)) == len(index_map)


def test_smooth_weights_come_back_with_small_error():
    rig = body_with_button()
    small, index_map = simplify_rig(rig, budget=2000)
    back = transfer_to_rig(rig, index_map, smooth_field(small.vertices.astype(np.float64)))
    truth = smooth_field(rig.vertices.astype(np.float64))
    body = np.arange(rig.num_vertices) < rig.num_vertices - 4
    err = np.abs(back - truth)[body]
    assert err.max() < 0.05 and err.mean() < 0.01
    np.testing.assert_allclose(back.sum(axis=1), 1.0, atol=1e-5)
    # kept vertices get exactly their own weights
    np.testing.assert_allclose(back[index_map], smooth_field(small.vertices.astype(np.float64)), atol=1e-6)


def test_transfer_stays_inside_each_part():
    rig = body_with_button()
    small, index_map = simplify_rig(rig, budget=2000)
    back = transfer_to_rig(rig, index_map, small.weights)
    np.testing.assert_allclose(back[-4:], [[0, 0, 1]] * 4, atol=1e-6)
    # without part labels the nearest body points would leak into the button
    leaky = transfer_weights(small.vertices, small.weights, rig.vertices, k=4)
    assert leaky[-4:, 1].max() > 0.1


def test_zero_rows_stay_zero():
    sv = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    sw = np.zeros((2, 2))
    out = transfer_weights(sv, sw, np.array([[0.5, 0, 0]]))
    assert (out == 0).all()
