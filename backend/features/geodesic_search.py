"""The searches behind backend.features.geodesic.geodesic_bone_distances: the voxel graph built row
by row, the per-bone Dijkstra search and the level search (K + 1 passes), which give identical
results (docs/geodesic.md, docs/runtime.md)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from backend.features.geometry import point_segment_distance

_BONE_CHUNK = 16  # bones per Dijkstra call (bounds the (chunk, voxels) distance block)
_EDGE_EPS = 1e-9  # csgraph needs strictly positive edge lengths
_LEVEL_FACTOR = 2.2
"""The level search (_search_levels) runs when a voxel has, by a straight-line estimate, at least
_LEVEL_FACTOR x (K + 1) bones within the search limit: it makes K + 1 graph passes that, with their
bookkeeping, cost about twice a single bone's, where the per-bone search makes one pass per bone and
each reaches the voxels within the limit (measured on the test rigs, docs/runtime.md)."""
_LEVEL_POOL_MAX = 1 << 22  # (voxels x bones) entries of the level search's float64 pool (32 MiB)
# all 26 in lexicographic order: a voxel's neighbours in this order have increasing node ids
_NEIGHBOURS = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
                        if (dx, dy, dz) != (0, 0, 0)], dtype=np.int64)


class _Graph(NamedTuple):
    """The search graph (``csr``, N voxel nodes then one node per bone) and, for the level search, its
    voxel part in two pieces: ``nbr`` (N, 26) the neighbour in each _NEIGHBOURS direction (-1: none),
    at ``step`` (26,) lengths; and the bridges, both ways, as (B2,) ``bridge_src``, ``bridge_dst``,
    ``bridge_len``."""

    csr: sparse.csr_matrix
    nbr: np.ndarray
    step: np.ndarray
    bridge_src: np.ndarray
    bridge_dst: np.ndarray
    bridge_len: np.ndarray


def _voxel_graph(ids: np.ndarray, coords: np.ndarray, h: float, bridges: tuple[np.ndarray, np.ndarray, np.ndarray],
                 seeds: tuple[np.ndarray, np.ndarray, np.ndarray], n_bones: int) -> _Graph:
    """The search graph, built row by row: the same matrix as ``csr_matrix((vals, (rows, cols)))`` over
    the 26-neighbour edges of :func:`_voxel_edges` and the bridges, both ways, and the seed edges from
    node N + bone, every length + _EDGE_EPS and duplicates summed (only a bridge can repeat: one
    pair joined from both of its components).

    ids (nx, ny, nz) node id or -1; coords (N, 3) the solid voxels in node order; bridges
    ((B,) src, (B,) dst, (B,) lengths); seeds ((S,) bone, (S,) node, (S,) lengths), sorted by
    (bone, node) and unique. Rows list a voxel's neighbours first, then its bridges."""
    N = len(coords)
    nx, ny, nz = ids.shape
    pad = np.full((nx + 2, ny + 2, nz + 2), -1, np.int32)
    pad[1:-1, 1:-1, 1:-1] = ids
    strides = np.array([(ny + 2) * (nz + 2), nz + 2, 1], np.int64)
    nbr = pad.ravel()[((coords + 1) @ strides)[:, None] + (_NEIGHBOURS @ strides)[None, :]]  # (N, 26)
    has = nbr >= 0
    step = h * np.sqrt((_NEIGHBOURS * _NEIGHBOURS).sum(axis=1).astype(np.float64)) + _EDGE_EPS
    counts = has.sum(axis=1)
    indices = nbr[has]
    data = np.broadcast_to(step, nbr.shape)[has]
    bs, bd, bl = bridges
    rows = cols = np.zeros(0, np.int64)
    val = np.zeros(0)
    if len(bs):
        key, where = np.unique(np.concatenate([bs * N + bd, bd * N + bs]), return_inverse=True)
        val = np.bincount(where.ravel(), weights=np.concatenate([bl, bl]) + _EDGE_EPS)  # a repeated pair: summed
        rows, cols = key // N, key % N
        ends = np.cumsum(counts)
        indices = np.insert(indices, ends[rows], cols.astype(np.int32))
        data = np.insert(data, ends[rows], val)
        counts = counts + np.bincount(rows, minlength=N)
    sb, sn, sl = seeds
    counts = np.concatenate([counts, np.bincount(sb, minlength=n_bones)])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    indices = np.concatenate([indices, sn]).astype(np.int32)
    data = np.concatenate([data, sl + _EDGE_EPS])
    csr = sparse.csr_matrix((data, indices, indptr), shape=(N + n_bones, N + n_bones))
    return _Graph(csr, nbr, step, rows, cols, val)


def _search_bones(graph: sparse.csr_matrix, N: int, Jd: int, K: int, limit: float, vnode: np.ndarray,
                  offset32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The K nearest bones of every vertex by one Dijkstra per bone (_BONE_CHUNK bones per call), each
    stopping at ``limit``: ((V, K) float32 distance + offset, inf where fewer bones are in reach;
    (V, K) int32 bone), smallest distance first, ties to the lower bone id."""
    V = len(vnode)
    best_d = np.full((V, K), np.inf, np.float32)
    best_j = np.zeros((V, K), np.int32)
    for s in range(0, Jd, _BONE_CHUNK):
        js = np.arange(s, min(s + _BONE_CHUNK, Jd), dtype=np.int32)
        D = dijkstra(graph, directed=True, indices=N + js, limit=limit)[:, vnode].astype(np.float32)  # (c, V)
        D += offset32[None, :]
        all_d = np.concatenate([best_d, D.T], axis=1)
        all_j = np.concatenate([best_j, np.broadcast_to(js, (V, len(js)))], axis=1)
        # a stable sort on distance: earlier columns hold lower bone ids, so ties go to the lower id
        order = np.argsort(all_d, axis=1, kind="stable")[:, :K]
        best_d = np.take_along_axis(all_d, order, axis=1)
        best_j = np.take_along_axis(all_j, order, axis=1)
    return best_d, best_j


class _LevelTie(Exception):
    """A level pass reached a voxel along an equally short path of a bone the voxel already holds."""


def _levels_pay(points: np.ndarray, N: int, heads: np.ndarray, tails: np.ndarray, K: int, limit: float) -> bool:
    """Whether the level search is expected to be the cheaper: the mean number of bones within
    ``limit`` of the sample ``points`` (some of the N voxels) by straight-line distance (a geodesic
    one is never shorter) against _LEVEL_FACTOR x (K + 1); and its pool must fit in _LEVEL_POOL_MAX."""
    Jd = len(heads)
    if Jd <= K + 1 or N * (Jd + 1) > _LEVEL_POOL_MAX:
        return False
    d, _ = point_segment_distance(points, heads, tails)
    return float((d <= limit).sum(axis=1).mean()) >= _LEVEL_FACTOR * (K + 1)


def _roots(pred: np.ndarray, entered: np.ndarray) -> np.ndarray:
    """(N,) for every node the first node of its shortest-path tree branch (the one ``entered``
    from the virtual source), by pointer jumping over ``pred``; unreached nodes map to themselves."""
    anc = np.where(entered | (pred < 0), np.arange(len(pred)), pred)
    while True:
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            return anc
        anc = nxt


def _search_levels(parts: _Graph, N: int, Jd: int, K: int, limit: float, vnode: np.ndarray,
                   offset32: np.ndarray, first: np.ndarray, first_bone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_search_bones`' result from K + 1 graph passes instead of one per bone.

    Level m of a voxel is its m-th nearest bone (within ``limit``) and that bone's distance. Level 1 is
    the multi-source pass (``first``, ``first_bone``: its (N,) distances and nearest bones). Level k is
    one Dijkstra from a virtual source over the voxel graph, which enters every voxel v at
    min over bones b not among v's first k-1 of (b's distance at a neighbour u holding b at a lower
    level + the edge u-v, or b's seed edge). Every voxel's k-th distance satisfies that pass's
    shortest-path equation (the k-th bone's path reaches v through a neighbour where the bone is
    among the first k, or a neighbour whose k-th is at most as far), and a graph with positive
    edges has one solution, whatever order the additions happen in: the distances are bit for bit
    those of the per-bone searches. A voxel's bone is the bone whose entry begins its branch of the
    shortest-path tree; on an exact tie that branch may belong to a bone the voxel already holds,
    which raises _LevelTie (the caller then searches per bone). Levels past K + 1 are computed while
    a vertex's (K+1)-th float32 distance ties its K-th, so the top K by (distance, bone) is exact.
    Memory: an (N, Jd + 1) float64 pool and a few arrays of the graph's size."""
    graph = parts.csr
    indptr, indices, data = graph.indptr, graph.indices, graph.data
    nnz = int(indptr[N])
    J1 = Jd + 1  # column Jd: "no bone"; row N: no neighbour
    # pool keys of every (voxel, direction)'s neighbour, the missing ones in row N
    nbr_key = np.where(parts.nbr >= 0, parts.nbr, N).astype(np.intp) * J1
    b_key = parts.bridge_dst.astype(np.intp) * J1
    seed_b = np.repeat(np.arange(Jd, dtype=np.intp), np.diff(indptr[N:N + Jd + 1]))
    seed_n = indices[nnz:].astype(np.intp)
    d1 = np.where(first <= limit, first, np.inf)
    dist_l = [d1]
    bone_l = [np.where(np.isfinite(d1), first_bone, Jd).astype(np.intp)]
    row_key = np.arange(N, dtype=np.intp) * J1
    pool = np.full((N + 1, J1), np.inf)  # pool[v, b]: b's best entry into v, inf for bones v holds
    flat = pool.reshape(-1)
    np.minimum.at(flat, seed_n * J1 + seed_b, 0.0 + data[nnz:])
    # the voxel graph plus one row for the virtual source (node N), rewritten every level
    ind = np.empty(nnz + N, np.int32)
    ind[:nnz] = indices[:nnz]
    dat = np.empty(nnz + N, np.float64)
    dat[:nnz] = data[:nnz]
    ptr = np.empty(N + 2, indptr.dtype)
    ptr[:N + 1] = indptr[:N + 1]
    key = np.empty(nbr_key.shape, np.intp)
    val = np.empty(nbr_key.shape, np.float64)

    def vertex_d(m: int) -> np.ndarray:
        out = dist_l[m][vnode].astype(np.float32)
        out += offset32
        return out

    while len(dist_l) < Jd:
        k = len(dist_l)
        if k >= K + 1 and not np.any(np.isfinite(vertex_d(K - 1)) & (vertex_d(k - 1) == vertex_d(K - 1))):
            break
        if not np.isfinite(dist_l[-1]).any():
            break
        last_b, last_d = bone_l[-1], dist_l[-1]  # the last level, offered to every neighbour
        np.add(nbr_key, last_b[:, None], out=key)
        np.add(last_d[:, None], parts.step[None, :], out=val)
        np.minimum.at(flat, key.ravel(), val.ravel())
        np.minimum.at(flat, b_key + last_b[parts.bridge_src], last_d[parts.bridge_src] + parts.bridge_len)
        for b in bone_l:  # bones a voxel holds never enter it (the pushes above offer them again)
            flat[row_key + b] = np.inf
        lab = pool[:N].argmin(axis=1)  # column Jd stays inf
        c = flat[row_key + lab]
        ent = np.flatnonzero(c <= limit)
        ptr[N + 1] = nnz + len(ent)
        ind[nnz:nnz + len(ent)] = ent
        dat[nnz:nnz + len(ent)] = c[ent]
        g = sparse.csr_matrix((dat[:nnz + len(ent)], ind[:nnz + len(ent)], ptr), shape=(N + 1, N + 1))
        dist, pred = dijkstra(g, directed=True, indices=N, return_predecessors=True, limit=limit)
        dist, pred = dist[:N], pred[:N]
        got = np.isfinite(dist)
        bone = np.where(got, lab[_roots(pred, pred == N)], Jd)
        for b in bone_l:
            if np.any(got & (bone == b)):
                raise _LevelTie
        dist_l.append(dist)
        bone_l.append(bone)
    M = len(dist_l)
    vd = np.stack([vertex_d(m) for m in range(M)], axis=1)  # (V, M), non-decreasing along rows
    vb = np.stack([b[vnode] for b in bone_l], axis=1)
    if M < K:
        vd = np.concatenate([vd, np.full((len(vnode), K - M), np.inf, np.float32)], axis=1)
        vb = np.concatenate([vb, np.full((len(vnode), K - M), Jd, vb.dtype)], axis=1)
    # the first K by (distance, bone): a stable sort by distance after one by bone
    by_bone = np.argsort(vb, axis=1, kind="stable")
    order = np.take_along_axis(by_bone, np.argsort(np.take_along_axis(vd, by_bone, axis=1), axis=1,
                                                   kind="stable")[:, :K], axis=1)
    best_d = np.take_along_axis(vd, order, axis=1)
    best_j = np.take_along_axis(vb, order, axis=1).astype(np.int32)
    best_j[~np.isfinite(best_d)] = 0
    return best_d, best_j


def _row_topk(d: np.ndarray, j: np.ndarray, K: int) -> np.ndarray:
    """(N, M) distances and bone ids -> (N, K) column order: smallest distance first, ties by bone id."""
    # bone ids are < 2**20, distances are finite or inf: a stable sort on d after a sort on j
    o1 = np.argsort(j, axis=1, kind="stable")
    d1 = np.take_along_axis(d, o1, axis=1)
    o2 = np.argsort(d1, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(o1, o2, axis=1)


def _segment_distance_rows(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distance from p[i] to segment a[i]-b[i]: (N,) float64."""
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-20), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)
