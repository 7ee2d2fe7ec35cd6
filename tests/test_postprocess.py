"""Post-processing: continuous influence limit, pruning, smoothing, never an empty row."""
from __future__ import annotations

import numpy as np
import pytest

from backend.inference.postprocess import (
    kth_largest,
    limit_influences,
    normalize_rows,
    postprocess,
    prune_weights,
    smooth_weights,
)


def random_weights(V: int = 300, J: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.random((V, J)) ** 3
    return w / w.sum(axis=1, keepdims=True)


def hard_topk(w: np.ndarray, k: int) -> np.ndarray:
    idx = np.argsort(-w, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(w)
    np.put_along_axis(out, idx, np.take_along_axis(w, idx, axis=1), axis=1)
    return out / out.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_limit_never_more_than_k_and_rows_sum_to_one(k):
    w = random_weights()
    out = postprocess(w, max_influences=k, prune=0.0)
    assert out.dtype == np.float32 and out.shape == w.shape
    assert (np.count_nonzero(out, axis=1) <= k).all()
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-6)
    assert (out >= 0).all()
    # the surviving bones are the row's largest ones
    top = np.argsort(-w, axis=1)[:, :k]
    outside = np.ones_like(w, bool)
    np.put_along_axis(outside, top, False, axis=1)
    assert (out[outside] == 0).all()


def test_limit_subtracts_the_next_weight():
    w = np.array([[0.5, 0.3, 0.15, 0.05]])
    # k=2: subtract the 3rd largest (0.15): [0.35, 0.15, 0, 0] / 0.5
    assert np.allclose(limit_influences(w, 2), [[0.7, 0.3, 0.0, 0.0]])
    # k >= J: unchanged
    assert np.allclose(limit_influences(w, 4), w)
    assert np.allclose(limit_influences(w, 0), w)


def test_limit_is_continuous_unlike_hard_topk():
    # the 4th and 5th weights nearly tie; a tiny change swaps their order
    a = np.array([[0.40, 0.30, 0.15, 0.0751, 0.0749]])
    b = np.array([[0.40, 0.30, 0.15, 0.0749, 0.0751]])
    assert np.abs(a - b).max() < 1e-3
    jump_hard = np.abs(hard_topk(a, 4) - hard_topk(b, 4)).max()
    jump_ours = np.abs(limit_influences(a, 4) - limit_influences(b, 4)).max()
    assert jump_hard > 0.05
    assert jump_ours < 1e-3
    # random small perturbations: output change bounded by a small multiple of the input change
    w = random_weights(V=500, J=10, seed=3)
    rng = np.random.default_rng(4)
    for eps in (1e-4, 1e-6):
        w2 = normalize_rows(w + eps * rng.random(w.shape))
        d_in = np.abs(w2 - w).max()
        d_out = np.abs(postprocess(w2, max_influences=4, prune=0.01) - postprocess(w, max_influences=4, prune=0.01)).max()
        assert d_out < 50 * d_in + 1e-6


def test_tied_rows_are_never_empty():
    w = np.full((3, 6), 1 / 6)
    out = postprocess(w, max_influences=4, prune=0.01)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-6)
    assert (np.count_nonzero(out, axis=1) <= 4).all()
    assert (np.count_nonzero(out, axis=1) >= 1).all()


def test_prune_removes_small_weights_continuously():
    w = np.array([[0.6, 0.395, 0.005], [0.004, 0.003, 0.993]])
    out = prune_weights(w, 0.01)
    assert out[0, 2] == 0 and out[1, 0] == 0 and out[1, 1] == 0
    assert np.allclose(out[0, :2], np.array([0.59, 0.385]) / 0.975)
    assert np.allclose(out.sum(axis=1), 1.0)
    # a row of many equal small weights is not emptied
    many = np.full((1, 200), 1 / 200)
    assert np.allclose(prune_weights(many, 0.01), many)


def test_empty_and_disallowed_columns():
    w = np.array([[0.0, 0.0, 0.0], [0.2, 0.5, 0.3], [np.nan, 1.0, 0.0]])
    allowed = np.array([True, False, True])
    out = postprocess(w, max_influences=0, prune=0.0, allowed=allowed)
    assert (out[:, 1] == 0).all()
    assert np.allclose(out[0], [0.5, 0.0, 0.5])  # empty row -> uniform over allowed bones
    assert np.allclose(out[1], [0.4, 0.0, 0.6])
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-6)


def test_smoothing_averages_over_mesh_neighbours():
    # a strip of 4 triangles: vertices 0..5, one bone each side
    faces = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [3, 5, 4]])
    w = np.zeros((6, 2))
    w[:3, 0] = 1.0
    w[3:, 1] = 1.0
    out = smooth_weights(w, faces, iterations=1, strength=0.5)
    # vertex 2's neighbours are 0, 1, 3, 4: half of them on bone 1
    assert np.allclose(out[2], [0.75, 0.25])
    assert np.allclose(out.sum(axis=1), 1.0)
    # more iterations move towards the mean, and the result keeps its symmetry
    out5 = smooth_weights(w, faces, iterations=5)
    assert np.abs(out5[:, 0] - 0.5).max() < np.abs(out[:, 0] - 0.5).max()
    with pytest.raises(ValueError):
        postprocess(w, faces=None, smooth=2)


def test_kth_largest():
    w = np.array([[3.0, 1.0, 2.0, 5.0]])
    assert kth_largest(w, 1)[0] == 5.0 and kth_largest(w, 3)[0] == 2.0 and kth_largest(w, 5)[0] == 0.0


def test_bad_arguments():
    w = random_weights(5, 3)
    with pytest.raises(ValueError):
        postprocess(w, max_influences=-1)
    with pytest.raises(ValueError):
        postprocess(w, prune=1.5)
    with pytest.raises(ValueError):
        postprocess(w[0])
