"""Separate mesh pieces (connected components of the faces) and (vertex, bone) features about them.

Modular characters are built from many separate pieces (eyes, teeth, hair, armour plates, tank
wheels), and artists mostly skin a small piece rigidly to one bone: in the labelled rigs 69-100 % of
the pieces holding under 5 % of a mesh's vertices have constant weights, by split and size
(docs/history/ablation.md).
A graph network over mesh edges sees a piece only through its 1-ring, so these features tell it
what the piece as a whole looks like:

* ``log10`` of the piece's share of the mesh surface area / 3, clipped to [-2, 0] (0 = the whole mesh);
* the piece's area-weighted mean of the prior weight of the candidate bone (a rigid alternative);
* the share of 5 points along the candidate bone (head to tail) inside the piece's bounding box,
  grown by 5 % of its diagonal (does the piece hold the bone?).

Pure numpy + scipy.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from backend.features.geometry import mesh_edges
from backend.features.topology import edge_pieces

#: number of (vertex, candidate bone) columns :func:`piece_pair_features` adds
FPIECE = 3
#: points sampled along each bone for the bounding-box test
BONE_SAMPLES = 5
#: the bounding box of a piece is grown by this share of its diagonal
BOX_MARGIN = 0.05


def mesh_pieces(faces: np.ndarray, num_vertices: int) -> tuple[int, np.ndarray]:
    """Connected components of the face graph: (P, (V,) int64 piece of each vertex).

    A vertex used by no face is a piece of its own."""
    return edge_pieces(mesh_edges(np.asarray(faces, np.int64).reshape(-1, 3)), num_vertices)


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) float64: a third of the area of every face around each vertex."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    return np.bincount(f.ravel(), weights=np.repeat(area / 3.0, 3), minlength=len(v))


def piece_area_shares(vertices: np.ndarray, faces: np.ndarray, pieces: tuple[int, np.ndarray] | None = None
                      ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(P, (V,) int64 piece of each vertex, (V,) float64 vertex areas, (P,) float64 share of the surface
    area in each piece); the shares are by vertex count when the mesh has no area at all.
    pieces: the mesh's (P, labels) when already known (backend.features.topology.MeshTopology)."""
    count, labels = mesh_pieces(faces, len(vertices)) if pieces is None else pieces
    area = vertex_areas(vertices, faces)
    total = float(area.sum())
    if total > 0.0:
        share = np.bincount(labels, weights=area, minlength=count) / total
    else:
        share = np.bincount(labels, minlength=count) / max(len(vertices), 1)
    return count, labels, area, share


def piece_rows(labels: np.ndarray, count: int) -> list[np.ndarray]:
    """The ascending (n_p,) vertex indices of each of the ``count`` pieces, from the (V,) piece of each
    vertex (an empty array for a piece with no vertex)."""
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(count + 1))
    return [order[starts[p]:starts[p + 1]] for p in range(count)]


def piece_means(values: np.ndarray, labels: np.ndarray, count: int, weights: np.ndarray) -> np.ndarray:
    """(P, C) float64 weighted mean of the (V, C) ``values`` (dense or scipy sparse) over each piece
    (uniform where a piece has no weight)."""
    w = np.asarray(weights, np.float64)
    total = np.bincount(labels, weights=w, minlength=count)
    flat = total[labels] <= 0.0  # pieces without area (lines, points) average uniformly
    w = np.where(flat, 1.0, w)
    total = np.bincount(labels, weights=w, minlength=count)
    S = sparse.csr_matrix((w, (labels, np.arange(len(labels)))), shape=(count, len(labels)))
    summed = S @ values
    summed = summed.toarray() if sparse.issparse(summed) else np.asarray(summed)
    return summed / total[:, None]


def bone_in_box(heads: np.ndarray, tails: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(P, Jd) float32 share of BONE_SAMPLES points from head to tail inside each box [lo, hi] ((P, 3))."""
    out = np.zeros((lo.shape[0], heads.shape[0]), np.float32)
    for t in np.linspace(0.0, 1.0, BONE_SAMPLES):
        p = (1.0 - t) * heads + t * tails  # (Jd, 3)
        inside = np.all((p[None, :, :] >= lo[:, None, :]) & (p[None, :, :] <= hi[:, None, :]), axis=2)
        out += inside
    return out / BONE_SAMPLES


def piece_pair_features(vertices: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                        cand: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(V, K, FPIECE) float32 features of each vertex's piece for its K candidate bones.

    vertices (V, 3), faces (F, 3), heads / tails (Jd, 3) deform bones (same frame as the vertices),
    cand (V, K) int64 candidate deform bones, prior (V, K) prior weights over the candidates."""
    V, K = cand.shape
    count, labels, area, share = piece_area_shares(vertices, faces)
    log_share = np.clip(np.log10(np.maximum(share, 1e-12)) / 3.0, -2.0, 0.0)

    Jd = heads.shape[0]
    rows = np.repeat(np.arange(V), K)
    dense = sparse.csr_matrix((prior.ravel().astype(np.float64), (rows, cand.ravel())), shape=(V, Jd))
    mean_prior = piece_means(dense, labels, count, area)  # (P, Jd)

    v = np.asarray(vertices, np.float64)
    lo = np.full((count, 3), np.inf)
    hi = np.full((count, 3), -np.inf)
    np.minimum.at(lo, labels, v)
    np.maximum.at(hi, labels, v)
    margin = BOX_MARGIN * np.linalg.norm(hi - lo, axis=1, keepdims=True)
    holds = bone_in_box(np.asarray(heads, np.float64), np.asarray(tails, np.float64), lo - margin, hi + margin)

    piece = labels[:, None]
    return np.stack([
        np.broadcast_to(log_share[labels][:, None], (V, K)),
        mean_prior[piece, cand],
        holds[piece, cand],
    ], axis=2).astype(np.float32)


#: a piece with less than this share of the surface area counts as small (a part, not the body)
SMALL_PIECE_SHARE = 0.05


def small_piece_share(vertices: np.ndarray, faces: np.ndarray, small: float = SMALL_PIECE_SHARE,
                      pieces: tuple[int, np.ndarray] | None = None) -> float:
    """Share of the surface area in separate pieces that each hold less than ``small`` of it.

    0 for one closed body, near 1 for a model assembled from many parts (a robot, a rifle, layered
    clothing). vertices (V, 3), faces (F, 3) -> float in [0, 1]; 0 when the mesh has no area.
    pieces: the mesh's (P, labels) when already known."""
    _, labels, area, share = piece_area_shares(vertices, faces, pieces)
    total = float(area.sum())
    if total <= 0.0:
        return 0.0
    return float(area[share[labels] < small].sum() / total)
