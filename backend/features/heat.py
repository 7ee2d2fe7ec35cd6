"""Heat-diffusion skin weights ("bone heat", after Baran & Popovic 2007), numpy + scipy only.

Each bone j is a heat source: every vertex is attached to its nearest *visible* bone with a
conductance H(v) = c / d(v)^2 (d = distance to that bone), and heat spreads over the surface by
the cotangent Laplacian. The weight of bone j solves

    (L + M H) w_j = M H p_j        (M lumped vertex areas, L >= 0 cotangent Laplacian)

i.e. -Delta w + H w = H p in Baran's notation, multiplied through by the mass matrix so that the
matrix is symmetric positive definite. Since H > 0 on every vertex the system is non-singular on
every mesh (holes, separate parts, isolated vertices): no vertex is ever left unweighted.
Visibility uses the volumetric geodesic distances of backend.features.geodesic instead of
ray casts. See docs/heat.md.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from backend.features.frame import canonical_deform_arrays
from backend.features.geodesic import geodesic_bone_distances, smooth_weights
from backend.features.geometry import point_segment_distance
from backend.rig import Rig, RigError

VISIBILITY = ("geodesic", "geodesic-nearest", "euclidean")
"""How a vertex's heat source is chosen:
geodesic: the bones whose volumetric geodesic distance is within ``window`` x the nearest one's
(plus one voxel) are visible; the visible bone nearest in a straight line (facing_distances when
facing) is the source (near-exact
straight-line ties split; voxel noise does not decide between a parent and a child bone);
geodesic-nearest: the bone nearest through the volume (ties within TIE split);
euclidean: the bone nearest in a straight line (no visibility test; leaks across gaps)."""

DEFAULT_C = 4.0
"""Conductance scale of H = c / d^2 (Baran & Popovic use 1). Chosen on rigs/val among 0.5-16:
2 and 8 score 0.02 and 0.01 worse in L1 (docs/heat.md)."""
WINDOW = 1.25
"""Geodesic distance ratio under which a bone counts as visible for visibility='geodesic'."""
COT_CLAMP = 1e3
"""Per-angle cotangents are clipped to [-COT_CLAMP, COT_CLAMP] (degenerate triangles)."""
UNIFORM = 1e-3
"""Weight of the uniform (graph) Laplacian added to the cotangent one, so that every mesh edge
conducts a little even when its clamped cotangent weight is 0."""
TIE = 1e-3
"""Bones within (1 + TIE) x the nearest distance share the vertex's heat source equally."""
D_FLOOR = 1e-3
"""Smallest vertex-to-bone distance used in H (canonical units: the character fits a unit sphere)."""
PRUNE = 0.05
"""Default weight floor of prune_weights (0 = keep every weight); chosen on rigs/val (docs/heat.md)."""
FACING = True
"""Lengthen distances to bones behind the surface (facing_distances); on rigs/val this lowers
the L1 error from 0.626 to 0.559 (docs/heat.md)."""
GEODESIC_K = 4
GEODESIC_RESOLUTION = 64


def clean_faces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(F, 3) triangles -> (F', 3) int64 without degenerate index triples (a repeated vertex)
    and without duplicates (the same three vertices in any order). Raises ValueError on
    indices outside 0..V-1."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) and (f.min() < 0 or f.max() >= n_vertices):
        raise ValueError(f"face indices outside 0..{n_vertices - 1}")
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    if not len(f):
        return f
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    return f[np.sort(first)]


def cotangent_laplacian(vertices: np.ndarray, faces: np.ndarray, cot_clamp: float = COT_CLAMP,
                        uniform: float = UNIFORM) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Robust cotangent Laplacian and lumped mass.

    vertices (V, 3), faces (F, 3). Returns (L, mass): L (V, V) float64 CSR, symmetric, positive
    semi-definite, rows summing to 0, with non-negative edge conductances
    max(0, (cot a + cot b) / 2) + uniform (clipped cotangents; summed over every triangle on the
    edge, so non-manifold edges work); mass (V,) float64, a third of the adjacent triangle areas,
    floored at a tiny positive value (isolated vertices). Scale: L is scale free, mass ~ length^2.
    """
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    V = len(v)
    f = clean_faces(faces, V)
    if not len(f):
        return sparse.csr_matrix((V, V)), np.ones(V)
    cots, area = [], None
    for i in range(3):  # cotangent of the angle at corner i, opposite edge (i+1, i+2)
        a = v[f[:, (i + 1) % 3]] - v[f[:, i]]
        b = v[f[:, (i + 2) % 3]] - v[f[:, i]]
        cr = np.linalg.norm(np.cross(a, b), axis=1)
        if area is None:
            area = 0.5 * cr
        dot = (a * b).sum(axis=1)
        scale = np.maximum((a * a).sum(axis=1) * (b * b).sum(axis=1), 1e-300) ** 0.5
        with np.errstate(divide="ignore", invalid="ignore"):
            c = dot / cr
        # zero-area corners: +-clamp by the sign of the dot product (0 for a zero-length edge)
        c = np.where(cr > 1e-12 * scale, c, np.sign(dot) * cot_clamp)
        cots.append(np.clip(np.nan_to_num(c), -cot_clamp, cot_clamp))
    rows = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    cols = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])
    vals = 0.5 * np.concatenate(cots)
    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    W = sparse.coo_matrix((vals, (lo, hi)), shape=(V, V)).tocsr()  # sums triangles sharing an edge
    W.sum_duplicates()
    W.data = np.maximum(W.data, 0.0) + uniform
    W = W + W.T
    L = (sparse.diags(np.asarray(W.sum(axis=1)).ravel()) - W).tocsr()
    mass = np.zeros(V)
    for i in range(3):
        np.add.at(mass, f[:, i], area / 3.0)
    pos = mass[mass > 0]
    floor = 1e-6 * (float(pos.mean()) if len(pos) else 1.0)
    return L, np.maximum(mass, floor)


def nearest_sources(dist: np.ndarray, tie: float = TIE) -> tuple[np.ndarray, np.ndarray]:
    """Nearest bone(s) of every vertex, ties split.

    dist (V, B) float distances (inf = not visible; at least one finite per row). Returns
    (p (V, B) float64 rows summing to 1 over the bones within (1 + tie) of the row minimum,
    d (V,) float64 row minimum)."""
    d = np.asarray(dist, np.float64)
    dmin = d.min(axis=1)
    p = (d <= dmin[:, None] * (1.0 + tie) + 1e-12).astype(np.float64)
    return p / p.sum(axis=1, keepdims=True), dmin


def face_average_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float64 unit vertex normals: the mean of the adjacent faces' *unit* normals (every
    face counts the same whatever its size; on val this suits facing_distances better than
    area weighting, docs/heat.md). Zero vectors for vertices in no (non-degenerate) face."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    ln = np.linalg.norm(fn, axis=1, keepdims=True)
    fn = np.where(ln > 1e-20, fn / np.maximum(ln, 1e-20), 0.0)
    n = np.zeros_like(v)
    for i in range(3):
        np.add.at(n, f[:, i], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(ln > 1e-12, n / np.maximum(ln, 1e-12), 0.0)


def facing_distances(v: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Straight-line vertex-to-bone distances lengthened where the surface faces away from the
    bone: d / (0.5 (cos + 1.001)), cos = <vertex normal, unit direction bone -> vertex>.
    A vertex whose outward normal points away from a bone (the usual case for the bone inside
    it) keeps d; one whose normal points at the bone (the bone is behind the surface, outside
    this part) gets up to ~2000 d. (V, 3), (F, 3), (B, 3), (B, 3) -> (V, B) float64."""
    d, t = point_segment_distance(v, heads, tails)
    d = d.astype(np.float64)
    n = face_average_normals(v, faces)  # (V, 3)
    # cos = n . (v - closest) / d with closest = head + t (tail - head)
    ab = (tails - heads).astype(np.float64)
    nv = (n * v).sum(axis=1)[:, None]  # (V, 1)
    proj = nv - n @ heads.T - t.astype(np.float64) * (n @ ab.T)  # n . (v - closest), (V, B)
    cos = np.where(d > 1e-12, proj / np.maximum(d, 1e-12), 1.0)
    cos = np.where((n * n).sum(axis=1)[:, None] > 0.5, np.clip(cos, -1.0, 1.0), 1.0)
    return d / (0.5 * (cos + 1.001))


def _visible_distances(v: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                       visibility: str, window: float, geodesic_k: int, resolution: int, facing: bool,
                       geodesic: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Distances used to pick each vertex's heat source: ((V, Jd) float64 with inf for bones that
    are not visible, (V,) float64 distance d(v) for H)."""
    if facing:
        eu = facing_distances(v, faces, heads, tails)
    else:
        eu = point_segment_distance(v, heads, tails)[0].astype(np.float64)
    if visibility == "euclidean":
        return eu, eu.min(axis=1)
    if geodesic is None:
        cand, gd = geodesic_bone_distances(v, faces, heads, tails, geodesic_k, resolution)
    else:  # the caller's nearest-first geodesic candidates (same resolution): their first k columns
        cand, gd = geodesic[0][:, :geodesic_k], geodesic[1][:, :geodesic_k]
    gd = gd.astype(np.float64)
    V = len(v)
    vis = np.full(eu.shape, np.inf)
    rows = np.arange(V)[:, None]
    if visibility == "geodesic-nearest":
        near = gd <= gd[:, :1] * (1.0 + TIE) + 1e-12
        vis[rows, cand] = np.where(near, gd, np.inf)
        p, _ = nearest_sources(vis)
        # d(v): straight-line distance to the chosen bone(s), the closest of them
        d = np.where(p > 0, eu, np.inf).min(axis=1)
        return vis, d
    h = 2.0 / max(resolution, 2)  # about one voxel in the canonical frame (unit sphere)
    ok = gd <= gd[:, :1] * window + h
    vis[rows, cand] = np.where(ok, eu[rows, cand], np.inf)
    return vis, vis.min(axis=1)


def heat_weights(vertices: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray, *,
                 visibility: str = "geodesic", c: float = DEFAULT_C, smooth_iters: int = 0,
                 window: float = WINDOW, geodesic_k: int = GEODESIC_K,
                 resolution: int = GEODESIC_RESOLUTION, prune: float = PRUNE,
                 facing: bool = FACING, geodesic: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Bone-heat weights over the given bones.

    vertices (V, 3) (canonical frame expected: inside the unit sphere; see heat_prior_weights),
    faces (F, 3) int, heads / tails (Jd, 3) of the deform bones. visibility: one of VISIBILITY;
    c: conductance scale; smooth_iters: neighbour-averaging passes after the solve; prune: drop
    weights below it (prune_weights), last. geodesic: optional precomputed nearest-first
    ((V, K) candidates, (V, K) distances) from geodesic_bone_distances at ``resolution`` with
    K >= geodesic_k, reused instead of a second geodesic solve (the result is identical).
    Returns (V, Jd) float32, non-negative, every row summing to 1. Deterministic.
    """
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    heads = np.asarray(heads, np.float64).reshape(-1, 3)
    tails = np.asarray(tails, np.float64).reshape(-1, 3)
    if visibility not in VISIBILITY:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITY)}, got {visibility!r}")
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"c must be a positive number, got {c}")
    if len(heads) == 0 or tails.shape != heads.shape:
        raise ValueError(f"need matching (Jd, 3) bone heads and tails with Jd >= 1, got {heads.shape}, {tails.shape}")
    if len(v) == 0:
        raise ValueError("the mesh has no vertices")
    f = clean_faces(faces, len(v))
    Jd = len(heads)
    if Jd == 1:
        return np.ones((len(v), 1), np.float32)

    vis, d = _visible_distances(v, f, heads, tails, visibility, window, geodesic_k, resolution, facing, geodesic)
    p, _ = nearest_sources(vis)
    L, mass = cotangent_laplacian(v, f)
    mh = mass * float(c) / np.maximum(d, D_FLOOR) ** 2  # (V,) M H, > 0 everywhere
    used = np.flatnonzero(p.any(axis=0))  # bones nobody is nearest to get weight 0 everywhere
    A = (L + sparse.diags(mh)).tocsc()
    rhs = mh[:, None] * p[:, used]
    lu = splu(A, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}, diag_pivot_thresh=0.0)
    w = np.zeros((len(v), Jd), np.float64)
    for n, j in enumerate(used):  # one column at a time: SuperLU's multi-column solve is ~6x slower
        w[:, j] = lu.solve(rhs[:, n])
    np.clip(w, 0.0, None, out=w)
    s = w.sum(axis=1, keepdims=True)
    w = np.where(s > 1e-12, w / np.where(s > 1e-12, s, 1.0), p)  # never an empty row
    w = w.astype(np.float32)
    if smooth_iters > 0:
        w = smooth_weights(w, f, smooth_iters)
    if prune > 0:
        w = prune_weights(w, prune)
    return w


def prune_weights(weights: np.ndarray, floor: float) -> np.ndarray:
    """Drop small influences the way a painter's weight limit does: a weight below floor / 2
    becomes 0, one in [floor / 2, floor) ramps linearly from 0 up to floor (no jump), larger ones
    are kept; rows are renormalised. A row that would lose everything is kept unpruned.
    weights (V, B) -> (V, B) float32."""
    w = np.asarray(weights, np.float64)
    lo = 0.5 * float(floor)
    ramp = np.clip((w - lo) / max(float(floor) - lo, 1e-12), 0.0, 1.0) * float(floor)
    out = np.where(w >= floor, w, ramp)
    s = out.sum(axis=1, keepdims=True)
    out = np.where(s > 1e-12, out / np.where(s > 1e-12, s, 1.0), w)
    return out.astype(np.float32)


def heat_prior_weights(rig: Rig, **kw) -> np.ndarray:
    """Bone-heat skinning of a rig: (V, J) float32 over ALL rig bones, zero columns for
    non-deform bones, rows summing to 1. Computed in the canonical frame (scale free).
    Keyword arguments go to heat_weights."""
    _, v, heads, tails, deform = canonical_deform_arrays(rig)
    try:
        wd = heat_weights(v, rig.faces, heads, tails, **kw)
    except ValueError as exc:
        raise RigError(f"{rig.name}: bone heat: {exc}") from None
    out = np.zeros((rig.num_vertices, rig.num_bones), np.float32)
    out[:, deform] = wd
    return out
