"""Volumetric geodesic bone distances and the model-free skin-weight prior.

After the idea of Geodesic Voxel Binding (Dionne & de Lasa, 2013): voxelise the character into a
solid, rasterise the bones into it, measure shortest paths *through the solid* from every bone
to every vertex (so a leg bone does not reach the other leg through the air), and turn the
distances into weights with an inverse-power falloff. See docs/geodesic.md.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from backend.features.frame import canonical_deform_arrays
from backend.features.geometry import point_segment_distance
from backend.features.geodesic_search import (_EDGE_EPS, _LevelTie, _levels_pay, _row_topk, _search_bones,
                                              _search_levels, _segment_distance_rows, _voxel_graph)
from backend.features.voxel import VoxelGrid, make_grid, voxelize
from backend.rig import Rig

DEFAULT_FALLOFF = 16.0
"""Inverse-power exponent: w_j ~ (d_min / d_j) ** falloff (see geodesic_weights). Chosen on
rigs/val: the prior's mean half-L1 error to the painted weights falls from 0.46 (4) to 0.34 (16)
and flattens beyond (0.33 at 24-32); docs/geodesic.md."""

RELEVANCE = 3.0
"""Per-bone searches stop at RELEVANCE x the largest vertex-to-nearest-bone distance: a bone that
far has weight below RELEVANCE ** -falloff (2e-8 at the default falloff) next to the nearest one.
Bones beyond are filled in as unreached (see _fill_unreached)."""
SEARCHES = ("auto", "bones", "levels", "reference")
SEARCH = "auto"
"""The default ``search`` of geodesic_bone_distances (all give identical results; bench-features --compare
sets "reference" to time the first version in the same process)."""

# the 13 "positive" neighbour offsets of the 26-neighbourhood
_OFFSETS = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
                     if (dx, dy, dz) > (0, 0, 0)], dtype=np.int64)


def _bone_samples(heads: np.ndarray, tails: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points along every bone with step <= spacing: ((P, 3) float64 points, (P,) int64 bone)."""
    pts, owner = [], []
    for j, (a, b) in enumerate(zip(heads.astype(np.float64), tails.astype(np.float64))):
        n = max(int(np.ceil(np.linalg.norm(b - a) / spacing)), 1)
        t = np.linspace(0.0, 1.0, n + 1)[:, None]
        pts.append(a + t * (b - a))
        owner.append(np.full(n + 1, j, np.int64))
    return np.concatenate(pts), np.concatenate(owner)


def _voxel_edges(ids: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """26-neighbour edges between solid voxels: (E,) src, (E,) dst node ids, (E,) lengths."""
    src, dst, length = [], [], []
    nx, ny, nz = ids.shape
    for o in _OFFSETS:
        sa = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(o, (nx, ny, nz)))
        sb = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(o, (nx, ny, nz)))
        a, b = ids[sa], ids[sb]
        m = (a >= 0) & (b >= 0)
        src.append(a[m])
        dst.append(b[m])
        length.append(np.full(int(m.sum()), h * float(np.sqrt((o * o).sum()))))
    return np.concatenate(src), np.concatenate(dst), np.concatenate(length)


def _component_bridges(solid: np.ndarray, ids: np.ndarray, grid: VoxelGrid, has_seed: np.ndarray,
                       has_surface: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join every solid component that lacks a bone or lacks mesh surface to its closest
    component (preferring complete ones) by one edge of Euclidean length.

    has_seed / has_surface: (nx, ny, nz) bool. Returns (B,) src, (B,) dst, (B,) lengths.
    Complete components (a bone and a surface) are never joined to each other: separate rigid
    parts with their own bones stay separate.
    """
    labels, n_comp = ndimage.label(solid, structure=np.ones((3, 3, 3), bool))
    if n_comp <= 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    comp_seed = np.zeros(n_comp + 1, bool)
    comp_seed[np.unique(labels[has_seed])] = True
    comp_surf = np.zeros(n_comp + 1, bool)
    comp_surf[np.unique(labels[has_surface])] = True
    complete = comp_seed & comp_surf
    complete[0] = False
    coords = np.argwhere(solid)  # C order, same order as the node ids
    lab = labels[solid]
    src, dst, length = [], [], []
    target_complete = cKDTree(coords[complete[lab]]) if complete.any() else None
    complete_nodes = np.flatnonzero(complete[lab])
    for c in range(1, n_comp + 1):
        if complete[c]:
            continue
        mine = np.flatnonzero(lab == c)
        if target_complete is not None:
            d, i = target_complete.query(coords[mine], k=1)
            best = int(np.argmin(d))
            other = int(complete_nodes[i[best]])
        else:  # nothing is complete: join to the closest voxel of any other component
            others = np.flatnonzero(lab != c)
            if len(others) == 0:
                continue
            d, i = cKDTree(coords[others]).query(coords[mine], k=1)
            best = int(np.argmin(d))
            other = int(others[i[best]])
        src.append(int(mine[best]))
        dst.append(other)
        length.append(float(d[best]) * grid.h)
    return np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(length, np.float64)


def geodesic_bone_distances(vertices: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                            k: int, resolution: int = 64, search: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Volumetric geodesic distance from every vertex to its K nearest bones.

    vertices (V, 3) float32 (canonical frame: inside the unit sphere), faces (F, 3), heads /
    tails (Jd, 3) of the deform bones. Returns cand (V, K) int64 (index into the given bones,
    K = min(k, Jd)), nearest first, and dist (V, K) float32 in the input's units.
    Bones no path reaches (a separate part with its own bones) are filled in by Euclidean
    nearness at a distance beyond every geodesic one. Deterministic.

    search: how the K nearest bones of every voxel are found -- "bones" (one Dijkstra per bone,
    :func:`_search_bones`), "levels" (K + 1 passes over all bones, :func:`_search_levels`), "auto"
    (the cheaper by an estimate) or "reference" (the plain first version: the graph built from
    coordinate lists by ``csr_matrix``, then one Dijkstra per bone; kept for tests and ``bench-features
    --compare``); None: the module's SEARCH ("auto"). All give identical results.
    """
    search = SEARCH if search is None else search
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    heads = np.asarray(heads, np.float64).reshape(-1, 3)
    tails = np.asarray(tails, np.float64).reshape(-1, 3)
    Jd = heads.shape[0]
    if Jd == 0 or tails.shape != heads.shape:
        raise ValueError(f"need matching (Jd, 3) bone heads and tails with Jd >= 1, got {heads.shape}, {tails.shape}")
    if len(v) == 0:
        raise ValueError("the mesh has no vertices")
    K = int(min(max(k, 1), Jd))

    bone_pts, bone_of = _bone_samples(heads, tails, 0.5 * _grid_step(v, heads, tails, resolution))
    grid = make_grid(np.concatenate([v, bone_pts]), resolution)
    solid, shell = voxelize(v, f, grid)
    bidx = grid.index_of(bone_pts)
    inside = solid[bidx[:, 0], bidx[:, 1], bidx[:, 2]]
    # a bone entirely outside the mesh still is a source: its voxels join the solid. Bones that
    # touch the solid use their inside part only, so a joint placed in the gap between two
    # rigid parts does not weld them together.
    bone_inside = np.bincount(bone_of, weights=inside, minlength=Jd) > 0
    outside_bone = ~bone_inside[bone_of]
    solid[bidx[outside_bone, 0], bidx[outside_bone, 1], bidx[outside_bone, 2]] = True
    keep = inside | outside_bone
    bone_pts, bone_of, bidx = bone_pts[keep], bone_of[keep], bidx[keep]

    ids = np.full(grid.shape, -1, np.int64)
    N = int(solid.sum())
    ids[solid] = np.arange(N)
    coords = np.argwhere(solid)  # C order: node id order

    # seeds: the voxels holding bone samples and their solid 26-neighbours, entered at their
    # exact distance from the bone segment
    seed_vox, seed_bone = [], []
    for o in np.concatenate([np.zeros((1, 3), np.int64), _OFFSETS, -_OFFSETS]):
        q = np.clip(bidx + o, 0, np.asarray(grid.shape) - 1)
        node = ids[q[:, 0], q[:, 1], q[:, 2]]
        m = node >= 0
        seed_vox.append(node[m])
        seed_bone.append(bone_of[m])
    if search == "reference":
        pair = np.unique(np.stack([np.concatenate(seed_bone), np.concatenate(seed_vox)], 1), axis=0)
        seed_b, seed_n = pair[:, 0], pair[:, 1]
    else:  # the same pairs in the same (bone, node) order, by one integer key
        pair = np.unique(np.concatenate(seed_bone) * N + np.concatenate(seed_vox))
        seed_b, seed_n = pair // N, pair % N
    centers = grid.centers(coords[seed_n])
    seed_d = _segment_distance_rows(centers, heads[seed_b], tails[seed_b])
    near = seed_d <= grid.h  # neighbours only when they are close to the bone itself
    seed_b, seed_n, seed_d = seed_b[near], seed_n[near], seed_d[near]

    has_seed = np.zeros(grid.shape, bool)
    has_seed[tuple(coords[seed_n].T)] = True
    vidx = grid.index_of(v)
    has_surface = np.zeros(grid.shape, bool)
    has_surface[vidx[:, 0], vidx[:, 1], vidx[:, 2]] = True

    bridges = _component_bridges(solid, ids, grid, has_seed, has_surface)
    if search == "reference":
        es, ed, el = _voxel_edges(ids, grid.h)
        bs, bd, bl = bridges
        rows = np.concatenate([es, ed, bs, bd, N + seed_b])
        cols = np.concatenate([ed, es, bd, bs, seed_n])
        vals = np.concatenate([el, el, bl, bl, seed_d]) + _EDGE_EPS
        graph = sparse.csr_matrix((vals, (rows, cols)), shape=(N + Jd, N + Jd))
    else:
        parts = _voxel_graph(ids, coords, grid.h, bridges, (seed_b, seed_n, seed_d), Jd)
        graph = parts.csr

    vnode = ids[vidx[:, 0], vidx[:, 1], vidx[:, 2]]
    if (vnode < 0).any():  # cannot happen (vertices are on the shell), kept as a guard
        _, nn = cKDTree(coords).query(vidx[vnode < 0], k=1)
        vnode[vnode < 0] = nn
    offset = np.linalg.norm(v - grid.centers(coords[vnode]), axis=1)

    # one multi-source pass gives every vertex's distance to its nearest bone; a bone more than
    # RELEVANCE x that far away gets a negligible weight, so each per-bone search stops there
    if search == "reference":
        first = dijkstra(graph, directed=True, indices=N + np.arange(Jd), min_only=True)
    else:  # with each voxel's nearest bone, the first level of _search_levels
        first, _, source = dijkstra(graph, directed=True, indices=N + np.arange(Jd), min_only=True,
                                    return_predecessors=True)
    nearest = first[vnode] + offset
    reached = np.isfinite(nearest)
    limit = RELEVANCE * float(nearest[reached].max()) if reached.any() else np.inf

    offset32 = offset.astype(np.float32)
    if search == "auto":  # (never "reference")
        sample = grid.centers(coords[::max(N // 512, 1)])
        search = "levels" if _levels_pay(sample, N, heads, tails, K, limit) else "bones"
    best = None
    if search == "levels":
        try:
            best = _search_levels(parts, N, Jd, K, limit, vnode, offset32, first[:N], source[:N] - N)
        except _LevelTie:  # two equally short paths the level pass cannot tell apart: search per bone
            best = None
    best_d, best_j = best if best is not None else _search_bones(graph, N, Jd, K, limit, vnode, offset32)

    missing = ~np.isfinite(best_d)
    if missing.any():
        best_d, best_j = best_d.astype(np.float64), best_j.astype(np.int64)
        _fill_unreached(v, heads, tails, best_d, best_j, missing)
    return best_j.astype(np.int64), best_d.astype(np.float32)


def _grid_step(v: np.ndarray, heads: np.ndarray, tails: np.ndarray, resolution: int) -> float:
    pts = np.concatenate([v, heads, tails])
    ext = float(np.ptp(pts, axis=0).max())
    return ext / max(resolution, 2) if ext > 1e-12 else 1e-3


def _fill_unreached(v: np.ndarray, heads: np.ndarray, tails: np.ndarray, best_d: np.ndarray,
                    best_j: np.ndarray, missing: np.ndarray) -> None:
    """In place: slots no geodesic path filled get the Euclidean-nearest unused bones at
    distance base + (Euclidean distance), base = max(largest geodesic distance found, diagonal
    of the bounding box of mesh and bones): beyond any path, so such bones get ~no weight."""
    finite = best_d[np.isfinite(best_d)]
    pts = np.concatenate([v, heads, tails])
    base = max(float(finite.max()) if finite.size else 0.0, float(np.linalg.norm(np.ptp(pts, axis=0))))
    rows = np.flatnonzero(missing.any(axis=1))
    eu, _ = point_segment_distance(v[rows], heads, tails)
    eu = eu.astype(np.float64)
    used = np.where(missing[rows], -1, best_j[rows])
    for r in range(used.shape[1]):  # mask bones already chosen
        ok = used[:, r] >= 0
        eu[np.flatnonzero(ok), used[ok, r]] = np.inf
    K = best_d.shape[1]
    order = np.argsort(eu, axis=1, kind="stable")
    for n, row in enumerate(rows):
        slots = np.flatnonzero(missing[row])
        pick = order[n, :len(slots)]
        best_j[row, slots] = pick
        best_d[row, slots] = base + eu[n, pick]
    # keep rows sorted nearest first
    o = _row_topk(best_d[rows], best_j[rows], K)
    best_d[rows] = np.take_along_axis(best_d[rows], o, axis=1)
    best_j[rows] = np.take_along_axis(best_j[rows], o, axis=1)


def geodesic_weights(dist: np.ndarray, falloff: float = DEFAULT_FALLOFF) -> np.ndarray:
    """(V, K) distances -> (V, K) float32 weights, rows sum to 1.

    Inverse power w_j = (d_min / d_j) ** falloff, normalised. It is scale free (the same
    weights in any unit), a vertex equidistant from two bones gets 50/50, and a bone
    10% farther gets 1.1**-falloff of the nearest one's weight (0.22 with the default 16).
    """
    d = np.asarray(dist, np.float64)
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"distances must have shape (V, K) with K >= 1, got {d.shape}")
    d = np.where(np.isfinite(d), d, np.nan)
    d_min = np.nanmin(np.where(np.isnan(d), np.inf, d), axis=1, keepdims=True)
    floor = 1e-6 * max(float(np.nanmax(d)) if np.isfinite(np.nanmax(d)) else 1.0, 1e-12)
    d_min = np.maximum(d_min, floor)
    ratio = d_min / np.maximum(d, floor)
    w = np.where(np.isnan(ratio), 0.0, ratio ** float(falloff))
    s = w.sum(axis=1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / d.shape[1])
    return w.astype(np.float32)


def smooth_weights(weights: np.ndarray, faces: np.ndarray, iters: int, alpha: float = 0.5) -> np.ndarray:
    """``iters`` passes of w <- (1 - alpha) w + alpha * mean over mesh neighbours, rows renormalised.

    weights (V, J) float, faces (F, 3). Vertices without neighbours keep their weights.
    """
    w = np.array(weights, dtype=np.float32)  # a copy: float32 keeps (V, J) memory small
    if iters <= 0 or len(faces) == 0:
        return w
    V = w.shape[0]
    f = np.asarray(faces, np.int64)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    keep = i != j
    adj = sparse.csr_matrix((np.ones(int(keep.sum()), np.float32), (i[keep], j[keep])), shape=(V, V))
    adj.data[:] = 1.0  # duplicates were summed: an edge counts once
    deg = np.asarray(adj.sum(axis=1)).ravel()
    has = deg > 0
    avg = (sparse.diags(np.where(has, 1.0 / np.maximum(deg, 1), 0.0).astype(np.float32)) @ adj).tocsr()
    a = np.where(has, alpha, 0.0).astype(np.float32)[:, None]
    keep_w = 1.0 - a
    for _ in range(iters):
        nb = avg @ w
        nb *= a
        w *= keep_w
        w += nb
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return w


def geodesic_prior_weights(rig: Rig, k: int = 8, resolution: int = 64, falloff: float = DEFAULT_FALLOFF,
                           smooth_iters: int = 2) -> np.ndarray:
    """The model-free skinning: (V, J) float32 over ALL rig bones (zero columns for non-deform
    bones); every row sums to 1. Computed in the canonical frame, then smoothed over mesh edges."""
    _, v, heads, tails, deform = canonical_deform_arrays(rig)
    cand, dist = geodesic_bone_distances(v, rig.faces, heads, tails, k, resolution)
    w = geodesic_weights(dist, falloff)
    V, J = rig.num_vertices, rig.num_bones
    dense_d = np.zeros((V, len(deform)), np.float32)
    np.put_along_axis(dense_d, cand, w, axis=1)
    dense_d = smooth_weights(dense_d, rig.faces, smooth_iters)
    out = np.zeros((V, J), np.float32)
    out[:, deform] = dense_d
    return out
