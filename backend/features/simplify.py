"""Work on big meshes through a simplified copy, then carry the weights back to every vertex.

Simplification is vertex clustering on a voxel grid, done separately in every connected part of
the mesh (so a small separate part such as an eye or a button keeps at least one point, and two
parts are never merged). Each cluster keeps its most central original vertex; faces whose
corners fall into three different clusters survive (a possibly non-manifold mesh, which the
geodesic voxeliser accepts). Weights come back by inverse-distance interpolation from the
nearest kept points of the same part.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from backend.rig import Rig

DEFAULT_BUDGET = 10_000


def mesh_components(num_vertices: int, faces: np.ndarray) -> np.ndarray:
    """(V,) int64 connected-part label of every vertex (an unused vertex is its own part)."""
    f = np.asarray(faces, np.int64)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    adj = sparse.csr_matrix((np.ones(len(i), np.int8), (i, j)), shape=(num_vertices, num_vertices))
    _, labels = connected_components(adj, directed=False)
    return labels.astype(np.int64)


def _cluster(vertices: np.ndarray, labels: np.ndarray, h: float) -> tuple[np.ndarray, int]:
    """(V,) int64 cluster id of every vertex for cell size h (cells never span two parts), count."""
    v = np.asarray(vertices, np.float64)
    labels = np.asarray(labels, np.int64)
    cell = np.floor((v - v.min(axis=0)) / h).astype(np.int64)
    sizes = [int(labels.max()) + 1] + [int(cell[:, a].max()) + 1 for a in range(3)]
    if float(np.prod(np.asarray(sizes, np.float64))) < 2.0**62:
        # one mixed-radix integer per (part, cell): its order is the lexicographic order of the tuple,
        # so sorting it numbers the clusters as the lexsort below does, several times faster
        key = ((labels * sizes[1] + cell[:, 0]) * sizes[2] + cell[:, 1]) * sizes[3] + cell[:, 2]
        uniq, cid = np.unique(key, return_inverse=True)
        return cid.astype(np.int64).reshape(-1), len(uniq)
    order = np.lexsort((cell[:, 2], cell[:, 1], cell[:, 0], labels))
    keys = np.stack([labels, cell[:, 0], cell[:, 1], cell[:, 2]], 1)[order]
    new = np.ones(len(v), bool)
    new[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    cid = np.empty(len(v), np.int64)
    cid[order] = np.cumsum(new) - 1
    return cid, int(new.sum())


def cluster_vertices(vertices: np.ndarray, labels: np.ndarray, budget: int) -> np.ndarray:
    """(V,) int64 cluster id per vertex: the finest grid clustering with at most ``budget``
    clusters (never fewer than one per part)."""
    v = np.asarray(vertices, np.float64)
    diag = float(np.linalg.norm(np.ptp(v, axis=0))) or 1.0
    lo, hi = np.log(diag * 1e-5), np.log(diag * 2.0)  # log cell size; hi gives one cell per part
    best, _ = _cluster(v, labels, float(np.exp(hi)))
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        cid, n = _cluster(v, labels, float(np.exp(mid)))
        if n <= budget:
            hi, best = mid, cid
        else:
            lo = mid
    return best


def simplify_rig(rig: Rig, budget: int = DEFAULT_BUDGET, labels: np.ndarray | None = None) -> tuple[Rig, np.ndarray]:
    """Simplified rig with at most ``budget`` vertices (more only when the mesh has more parts).

    Returns (small rig, (S,) int64 index_map: original vertex index of each kept vertex). The
    small rig keeps the skeleton, and the weights / mesh_part rows of its kept vertices.
    Below the budget the rig itself and the identity map are returned. labels: the (V,) connected
    parts when already known (:func:`mesh_components`, or backend.features.topology's pieces, which
    number them alike).
    """
    V = rig.num_vertices
    if V <= budget:
        return rig, np.arange(V, dtype=np.int64)
    labels = mesh_components(V, rig.faces) if labels is None else np.asarray(labels, np.int64)
    cid = cluster_vertices(rig.vertices, labels, budget)
    n = int(cid.max()) + 1
    v = rig.vertices.astype(np.float64)
    counts = np.bincount(cid, minlength=n).astype(np.float64)
    centroid = np.stack([np.bincount(cid, weights=v[:, a], minlength=n) for a in range(3)], 1) / counts[:, None]
    d = np.linalg.norm(v - centroid[cid], axis=1)
    order = np.lexsort((np.arange(V), d, cid))  # per cluster: most central, then lowest index
    first = np.ones(V, bool)
    first[1:] = cid[order][1:] != cid[order][:-1]
    index_map = order[first]  # sorted by cluster id, so cluster c -> small vertex c
    f = cid[rig.faces.astype(np.int64)]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f = f[keep]
    if len(f):
        canon = np.sort(f, axis=1)
        _, first_face = np.unique(canon, axis=0, return_index=True)
        f = f[np.sort(first_face)]
    small = rig.copy()
    small.vertices = rig.vertices[index_map].copy()
    small.faces = f.astype(np.int32)
    small.weights = None if rig.weights is None else rig.weights[index_map].copy()
    small.mesh_part = None if rig.mesh_part is None else rig.mesh_part[index_map].copy()
    return small, index_map.astype(np.int64)


def _group_rows(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(sorted distinct labels (P,), the ascending (n_p,) row indices of each) of a (V,) label array."""
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    return values, np.split(order, starts[1:])


#: Rows interpolated at a time in :func:`transfer_weights` (bounds the (rows, k, J) gather).
TRANSFER_CHUNK = 32768


def transfer_weights(small_vertices: np.ndarray, small_weights: np.ndarray, vertices: np.ndarray,
                     k: int = 4, small_labels: np.ndarray | None = None,
                     labels: np.ndarray | None = None, power: float = 2.0) -> np.ndarray:
    """Weights on a simplified point set -> every original vertex.

    small_vertices (S, 3), small_weights (S, J), vertices (V, 3). Inverse-distance interpolation
    (weights 1 / d**power) from the k nearest small points; with ``small_labels`` (S,) and
    ``labels`` (V,) only points of the same part are used (a part with no small point falls back
    to all points). A vertex on a small point copies its weights. Returns (V, J) float32, rows
    summing to 1 (rows that were all zero stay zero).
    """
    sv = np.asarray(small_vertices, np.float64)
    sw = np.asarray(small_weights, np.float64)
    q = np.asarray(vertices, np.float64)
    out = np.zeros((len(q), sw.shape[1]), np.float64)
    if (small_labels is None) != (labels is None):
        raise ValueError("give both small_labels and labels, or neither")
    if labels is None:
        groups = [(np.arange(len(q)), np.arange(len(sv)))]
    else:
        groups = []
        parts, rows_of = _group_rows(np.asarray(labels))
        small_parts, small_rows = _group_rows(np.asarray(small_labels))
        where = dict(zip(small_parts.tolist(), small_rows))
        for lab, rows in zip(parts.tolist(), rows_of):
            src = where.get(lab)
            groups.append((rows, src if src is not None else np.arange(len(sv))))
    for rows, src in groups:
        kk = min(k, len(src))
        tree = cKDTree(sv[src])
        for start in range(0, len(rows), TRANSFER_CHUNK):
            part = rows[start:start + TRANSFER_CHUNK]
            d, i = tree.query(q[part], k=kk)
            d, i = d.reshape(len(part), kk), src[i.reshape(len(part), kk)]
            inv = 1.0 / np.maximum(d, 1e-12) ** power
            exact = d[:, 0] <= 1e-12
            inv[exact] = 0.0
            inv[exact, 0] = 1.0
            inv /= inv.sum(axis=1, keepdims=True)
            out[part] = np.einsum("vk,vkj->vj", inv, sw[i])
    s = out.sum(axis=1, keepdims=True)
    np.divide(out, np.maximum(s, 1e-12), out=out)
    out[s[:, 0] <= 1e-8] = 0.0
    return out.astype(np.float32)


def transfer_to_rig(rig: Rig, index_map: np.ndarray, small_weights: np.ndarray, k: int = 4,
                    labels: np.ndarray | None = None) -> np.ndarray:
    """Weights computed on ``simplify_rig(rig)``'s small rig -> (V, J) float32 on ``rig``,
    interpolated within each connected part (``labels``: the (V,) parts when already known)."""
    if len(index_map) == rig.num_vertices:
        return np.asarray(small_weights, np.float32)
    labels = mesh_components(rig.num_vertices, rig.faces) if labels is None else np.asarray(labels, np.int64)
    return transfer_weights(rig.vertices[index_map], small_weights, rig.vertices, k=k,
                            small_labels=labels[index_map], labels=labels)
