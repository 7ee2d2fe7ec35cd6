"""Post-processing: continuous influence limit, pruning, smoothing, never an empty row."""
from __future__ import annotations

import numpy as np
import pytest

from backend.inference.postprocess import (
    diffuse_weights,
    kth_largest,
    limit_influences,
    normalize_rows,
    postprocess,
    prune_weights,
    sharpen_weights,
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


def test_limit_fades_bones_near_the_next_weight():
    w = np.array([[0.5, 0.3, 0.15, 0.05], [0.5, 0.2, 0.15, 0.15]])
    # k=2, t = the 3rd largest (0.15), fade 2: weights >= 0.3 whole, 0.2 at gain 1/3, <= 0.15 gone
    out = limit_influences(w, 2)
    assert np.allclose(out[0], [0.625, 0.375, 0.0, 0.0])
    assert np.allclose(out[1], np.array([0.5, 0.2 / 3, 0.0, 0.0]) / (0.5 + 0.2 / 3))
    # a wider fade keeps less of the middle weight
    assert np.allclose(limit_influences(w[1:], 2, fade=3.0), np.array([[0.5, 0.2 / 6, 0, 0]]) / (0.5 + 0.2 / 6))
    # k >= J: unchanged
    assert np.allclose(limit_influences(w, 4), w)
    assert np.allclose(limit_influences(w, 0), w)
    with pytest.raises(ValueError, match="fade"):
        limit_influences(w, 2, fade=1.0)


def test_clear_artist_rows_pass_through_unchanged():
    # at most k influences, each well above the prune threshold: limit and prune leave the row alone,
    # so a bone painted at >= 0.05 is still there (the old subtracting clean-up cut 0.06 to 0.01)
    w = np.array([[0.6, 0.34, 0.06, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25, 0.0], [1.0, 0, 0, 0, 0]])
    assert np.allclose(postprocess(w, max_influences=4, prune=0.05), w, atol=1e-6)


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
        d_out = np.abs(postprocess(w2, max_influences=4, prune=0.01)
                       - postprocess(w, max_influences=4, prune=0.01)).max()
        assert d_out < 50 * d_in + 1e-6


def test_tied_rows_are_never_empty():
    w = np.full((3, 6), 1 / 6)
    out = postprocess(w, max_influences=4, prune=0.01)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-6)
    assert (np.count_nonzero(out, axis=1) <= 4).all()
    assert (np.count_nonzero(out, axis=1) >= 1).all()


def test_prune_removes_small_weights_continuously():
    w = np.array([[0.6, 0.395, 0.005], [0.004, 0.003, 0.993], [0.6, 0.391, 0.009]])
    out = prune_weights(w, 0.01)
    assert out[0, 2] == 0 and out[1, 0] == 0 and out[1, 1] == 0
    assert np.allclose(out[0, :2], np.array([0.6, 0.395]) / 0.995)
    # 0.009 lies in the fade (0.008 .. 0.01): kept at gain 0.5
    assert np.allclose(out[2], np.array([0.6, 0.391, 0.0045]) / 0.9955)
    assert np.allclose(out.sum(axis=1), 1.0)
    # continuous across the fade's ends
    lo, hi = (prune_weights(np.array([[0.6, 0.4 - x, x]]), 0.01)[0, 2] for x in (0.008 + 1e-9, 0.01 - 1e-9))
    assert lo < 1e-6 and abs(hi - 0.01 / (0.99 + 0.01)) < 1e-6
    # a row of many equal small weights is not emptied
    many = np.full((1, 200), 1 / 200)
    assert np.allclose(prune_weights(many, 0.01), many)


def test_sharpen_moves_weight_to_the_large_entries():
    w = np.array([[0.6, 0.3, 0.1], [0.5, 0.5, 0.0]])
    out = sharpen_weights(w, 2.0)
    assert np.allclose(out[0], np.array([0.36, 0.09, 0.01]) / 0.46)
    assert np.allclose(out[1], [0.5, 0.5, 0.0])  # ties stay tied
    assert np.allclose(sharpen_weights(w, 1.0), w)
    # inside postprocess the sharpening comes before the limit: the order of the bones never changes
    rw = random_weights(seed=5)
    got = postprocess(rw, max_influences=0, prune=0.0, sharpen=1.4)
    assert np.allclose(got, normalize_rows(rw ** 1.4), atol=1e-6)
    assert (np.argsort(-got, axis=1)[:, :3] == np.argsort(-rw, axis=1)[:, :3]).all()
    with pytest.raises(ValueError, match="power"):
        postprocess(rw, sharpen=0.0)


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


def grid_mesh(n: int, x0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A unit square at x0.. x0 + 1 split into n x n quads (2 triangles each): vertices, faces."""
    t = np.linspace(0.0, 1.0, n + 1)
    xx, yy = np.meshgrid(t, t, indexing="ij")
    v = np.stack([xx.ravel() + x0, yy.ravel(), np.zeros(xx.size)], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def test_diffusion_blurs_by_distance_not_by_mesh_density():
    """A step between two bones at x = 0.5, blurred on a coarse and on a 4x finer grid: the diffusion's
    profile is the same on both (its reach is a share of the size), the edge smoothing's is not."""
    profiles, edge_profiles = [], []
    for n in (8, 32):
        v, f = grid_mesh(n)
        w = np.stack([v[:, 0] < 0.5, v[:, 0] >= 0.5], axis=1).astype(float)
        out = diffuse_weights(w, v, f, radius=0.05)
        assert out.min() >= 0.0 and np.allclose(out.sum(axis=1), 1.0)
        probe = np.isclose(v[:, 1], 0.5) & np.isin(np.round(v[:, 0], 6), [0.25, 0.375, 0.625, 0.75])
        profiles.append(out[probe, 0])
        edge_profiles.append(smooth_weights(w, f, iterations=3)[probe, 0])
        np.testing.assert_array_equal(diffuse_weights(w, v, f, radius=0.0), w)
    # (the coarse grid draws the step half a cell off, hence not 0)
    assert np.abs(profiles[0] - profiles[1]).max() < 0.08
    assert np.abs(edge_profiles[0] - edge_profiles[1]).max() > 0.2
    # the blur is real: weight crosses the step, more near it than far from it
    assert 0.05 < 1.0 - profiles[1][1] and 1.0 - profiles[1][1] > 1.0 - profiles[1][0] + 0.02


def test_diffusion_keeps_separate_pieces_and_constant_rows_apart():
    (v1, f1), (v2, f2) = grid_mesh(4), grid_mesh(4, x0=1.0)  # two touching but unconnected pieces
    v, f = np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)])
    w = np.zeros((len(v), 3))
    w[: len(v1), 0] = 1.0
    w[len(v1):, 1:] = [0.3, 0.7]
    np.testing.assert_allclose(diffuse_weights(w, v, f, radius=0.2), w, atol=1e-9)


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


def test_diffusion_survives_degenerate_meshes():
    """Zero-area faces, duplicate vertices, zero-length edges and a vertex in no face: finite rows that
    sum to 1, and the loose vertex keeps its weights."""
    v, f = grid_mesh(4)
    v = np.concatenate([v, v[:3], [[5.0, 5.0, 5.0]]])  # 3 duplicates and a loose vertex
    n = len(v) - 4
    f = np.concatenate([f, [[0, n, 1], [n, n + 1, n + 2], [2, 2, 3]]])  # zero-length edges, zero-area faces
    w = np.random.default_rng(1).random((len(v), 4))
    out = diffuse_weights(w, v, f, radius=0.05)
    assert np.isfinite(out).all() and np.allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out[-1], w[-1] / w[-1].sum())
    flat = diffuse_weights(w[:3], np.zeros((3, 3)), np.array([[0, 1, 2]]), radius=0.05)  # a mesh of one point
    assert np.isfinite(flat).all() and np.allclose(flat.sum(axis=1), 1.0)
