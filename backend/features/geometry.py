"""Pure geometry on triangle meshes and bone segments (numpy + scipy)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 area-weighted unit vertex normals (zero vector for isolated vertices)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for c in range(3):
        np.add.at(n, f[:, c], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-20, n / np.maximum(length, 1e-20), 0.0).astype(np.float32)


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 unique undirected edges (i < j) of a triangle mesh, sorted by (i, j).

    Each edge is encoded as the one integer i * n + j (n = largest index + 1), so the
    de-duplication is a 1-D sort (several times faster than ``np.unique(axis=0)``, same result).
    """
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not len(f):
        return np.zeros((0, 2), np.int64)
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    n = int(hi.max()) + 1
    key = np.unique(lo[keep] * n + hi[keep])
    return np.stack([key // n, key % n], axis=1)


def knn(points: np.ndarray, k: int, query: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of each query point among ``points`` (excluding itself when
    ``query`` is None). Returns ((N, k) float32 distances, (N, k) int64 indices)."""
    pts = np.asarray(points, dtype=np.float64)
    tree = cKDTree(pts)
    if query is None:
        kk = min(k + 1, len(pts))
        d, i = tree.query(pts, k=kk)
        d, i = np.atleast_2d(d)[:, 1:], np.atleast_2d(i)[:, 1:]
    else:
        kk = min(k, len(pts))
        d, i = tree.query(np.asarray(query, dtype=np.float64), k=kk)
        d, i = d.reshape(len(query), kk), i.reshape(len(query), kk)
    if i.shape[1] < k:  # fewer points than k: repeat the last neighbour
        pad = k - i.shape[1]
        if i.shape[1] == 0:
            n = len(pts) if query is None else len(query)
            return np.zeros((n, k), np.float32), np.tile(np.arange(n)[:, None], (1, k)).astype(np.int64)
        d = np.concatenate([d, np.repeat(d[:, -1:], pad, axis=1)], axis=1)
        i = np.concatenate([i, np.repeat(i[:, -1:], pad, axis=1)], axis=1)
    return d.astype(np.float32), i.astype(np.int64)


def point_segment_distance(points: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                           chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Distance from every point to every segment head->tail.

    points (V, 3), heads/tails (J, 3). Returns ((V, J) float32 distance,
    (V, J) float32 position along the segment t in [0, 1]).
    """
    p = np.asarray(points, dtype=np.float32)
    a = np.asarray(heads, dtype=np.float32)
    ab = np.asarray(tails, dtype=np.float32) - a
    denom = np.maximum((ab * ab).sum(axis=1), 1e-12)  # (J,)
    V, J = p.shape[0], a.shape[0]
    dist = np.empty((V, J), np.float32)
    tpos = np.empty((V, J), np.float32)
    for s in range(0, V, chunk):
        q = p[s:s + chunk]
        # t = ((q - a) . ab) / |ab|^2, clipped
        t = (q @ ab.T - (a * ab).sum(axis=1)[None, :]) / denom[None, :]
        np.clip(t, 0.0, 1.0, out=t)
        qq = (q * q).sum(axis=1)[:, None]
        # |q - (a + t ab)|^2 = |q-a|^2 - 2 t (q-a).ab + t^2 |ab|^2
        qa2 = qq - 2.0 * (q @ a.T) + (a * a).sum(axis=1)[None, :]
        qab = q @ ab.T - (a * ab).sum(axis=1)[None, :]
        d2 = qa2 - 2.0 * t * qab + t * t * denom[None, :]
        dist[s:s + chunk] = np.sqrt(np.maximum(d2, 0.0))
        tpos[s:s + chunk] = t
    return dist, tpos
