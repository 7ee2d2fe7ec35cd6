"""Post-processing of predicted skin weights (numpy + scipy): smoothing, a continuous influence
limit, continuous pruning and renormalisation.

Every step is a continuous function of the weights: a hard top-k cut jumps when the k-th and
(k+1)-th weights of a vertex swap order, which shows as a crease on the deformed mesh. Here a bone
fades out as its weight approaches the (k+1)-th largest of its row, and likewise as it falls below
the prune threshold; weights well above either cut are kept whole, so an artist-like row of at
most k clear influences passes through unchanged. No output row is ever empty.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from scipy import sparse

from backend.features.geometry import mesh_edges
from backend.features.pieces import vertex_areas

#: Relative mass below which a limited row counts as degenerate (its top k+1 weights tie).
_DEGENERATE = 1e-7


def normalize_rows(w: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """(V, J) -> (V, J) float64, non-negative rows summing to 1.

    Empty rows become uniform over the ``allowed`` (J,) bool columns (all columns when None).
    """
    w = np.clip(np.asarray(w, np.float64), 0.0, None)
    if allowed is not None:
        w = w * np.asarray(allowed, bool)[None, :]
    s = w.sum(axis=1, keepdims=True)
    empty = s[:, 0] <= 0.0
    out = w / np.where(s > 0.0, s, 1.0)
    if empty.any():
        cols = np.ones(w.shape[1], bool) if allowed is None else np.asarray(allowed, bool)
        out[empty] = cols / max(int(cols.sum()), 1)
    return out


def kth_largest(w: np.ndarray, k: int) -> np.ndarray:
    """(V,) the k-th largest value of each row (k >= 1; 0 when the row has fewer than k entries)."""
    if k > w.shape[1]:
        return np.zeros(w.shape[0], w.dtype)
    return -np.partition(-w, k - 1, axis=1)[:, k - 1]


#: How far above the cut a bone keeps its full weight in :func:`limit_influences`: a bone fades in
#: between the row's (k+1)-th largest weight t and ``LIMIT_FADE * t`` (chosen on val + the
#: out-of-style check; the study: docs/history/ablation.md).
LIMIT_FADE = 2.0

#: The sharpening powers, smoothing iterations and diffusion radii (% of the bounding-box diagonal) a
#: model may carry (model_meta.KEY_SHARPEN / KEY_SMOOTH / KEY_DIFFUSE).
SHARPEN_RANGE = (1.0, 10.0)
MAX_SMOOTH = 20
MAX_DIFFUSE = 5.0


def check_clean_up(sharpen: float = 1.0, smooth: int = 0, diffuse: float = 0.0) -> None:
    """ValueError unless ``sharpen`` lies in SHARPEN_RANGE, ``smooth`` is a whole number in
    [0, MAX_SMOOTH] and ``diffuse`` in [0, MAX_DIFFUSE] (what the writers of a model's clean-up
    settings accept)."""
    low, high = SHARPEN_RANGE
    if not low <= sharpen <= high:
        raise ValueError(f"sharpen must be in [{low:g}, {high:g}], got {sharpen}")
    if not (isinstance(smooth, int) and 0 <= smooth <= MAX_SMOOTH):
        raise ValueError(f"smooth must be a whole number in [0, {MAX_SMOOTH}], got {smooth!r}")
    if not 0.0 <= diffuse <= MAX_DIFFUSE:
        raise ValueError(f"diffuse must be in [0, {MAX_DIFFUSE:g}] % of the character's size, got {diffuse}")


#: Where pruning starts to fade a weight out, as a share of the prune threshold (:func:`prune_weights`).
PRUNE_FADE_START = 0.8


def limit_influences(w: np.ndarray, k: int, fade: float = LIMIT_FADE) -> np.ndarray:
    """At most ``k`` non-zero weights per row without creases (k <= 0: unlimited).

    w (V, J) non-negative, rows summing to 1 -> (V, J) float64 rows summing to 1. With t the row's
    (k+1)-th largest weight, each weight is multiplied by clip((w - t) / ((fade - 1) t), 0, 1): weights
    at or below t vanish (so at most k survive), weights at least ``fade`` times t are kept whole and
    the rest fade in between; then the row is renormalised. When the k-th and (k+1)-th weights swap
    order both are near t and near zero gain, so nothing jumps. Rows whose top k+1 weights all tie
    (nothing survives) keep their first k largest weights (the only place the map is not continuous:
    there is no continuous choice there).
    """
    if fade <= 1.0:
        raise ValueError(f"limit fade must be > 1, got {fade}")
    w = np.asarray(w, np.float64)
    if k <= 0 or w.shape[1] <= k:
        return normalize_rows(w)
    t = kth_largest(w, k + 1)[:, None]
    gain = np.clip((w - t) / np.maximum((fade - 1.0) * t, 1e-30), 0.0, 1.0)
    out = w * gain
    s = out.sum(axis=1)
    bad = s <= _DEGENERATE * np.maximum(w.sum(axis=1), 1e-30)
    if bad.any():
        rows = np.flatnonzero(bad)
        top = np.argsort(-w[rows], axis=1, kind="stable")[:, :k]
        sub = np.zeros((len(rows), w.shape[1]))
        np.put_along_axis(sub, top, np.take_along_axis(w[rows], top, axis=1), axis=1)
        out[rows] = sub
    return normalize_rows(out)


def prune_weights(w: np.ndarray, threshold: float, fade_start: float = PRUNE_FADE_START) -> np.ndarray:
    """Remove weights below ``threshold`` continuously, keeping the others whole.

    With T = min(threshold, half the row's largest weight), each weight is multiplied by
    clip((w - fade_start * T) / ((1 - fade_start) T), 0, 1) and the row renormalised: weights at or
    above T are untouched (so a bone the row holds at >= threshold still does after renormalising),
    weights below ``fade_start * T`` vanish, the ones between fade. (V, J) -> (V, J) float64; never
    empty (the row's largest weight is always kept).
    """
    if not 0.0 <= fade_start < 1.0:
        raise ValueError(f"prune fade start must be in [0, 1), got {fade_start}")
    w = normalize_rows(w)
    if threshold <= 0.0:
        return w
    top = np.minimum(threshold, 0.5 * w.max(axis=1, keepdims=True))
    gain = np.clip((w - fade_start * top) / np.maximum((1.0 - fade_start) * top, 1e-30), 0.0, 1.0)
    return normalize_rows(w * gain)


def sharpen_weights(w: np.ndarray, power: float) -> np.ndarray:
    """w ** power, rows renormalised: (V, J) -> (V, J) float64. power > 1 moves weight from a row's
    small entries to its large ones (1 = unchanged); the order of the bones never changes."""
    if not power > 0.0:
        raise ValueError(f"sharpening power must be > 0, got {power}")
    w = normalize_rows(w)
    return w if power == 1.0 else normalize_rows(w ** power)


def vertex_adjacency(faces: np.ndarray, num_vertices: int, edges: np.ndarray | None = None) -> sparse.csr_matrix:
    """(V, V) row-normalised adjacency of the mesh edges (rows of isolated vertices are empty);
    edges: the (E, 2) :func:`mesh_edges` of ``faces`` when already known."""
    e = mesh_edges(faces) if edges is None else edges
    if len(e) == 0:
        return sparse.csr_matrix((num_vertices, num_vertices))
    i = np.concatenate([e[:, 0], e[:, 1]])
    j = np.concatenate([e[:, 1], e[:, 0]])
    a = sparse.csr_matrix((np.ones(len(i)), (i, j)), shape=(num_vertices, num_vertices))
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sparse.diags(1.0 / np.maximum(deg, 1.0)) @ a


def smooth_weights(w: np.ndarray, faces: np.ndarray, iterations: int, strength: float = 0.5,
                   edges: np.ndarray | None = None) -> np.ndarray:
    """Laplacian smoothing over the mesh edges: ``iterations`` times w <- (1-s) w + s mean_nbr(w).

    w (V, J), faces (F, 3) -> (V, J) float64 rows summing to 1 (isolated vertices keep their row);
    edges: the (E, 2) :func:`mesh_edges` of ``faces`` when already known.
    """
    w = normalize_rows(w)
    if iterations <= 0:
        return w
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"smoothing strength must be in (0, 1], got {strength}")
    adj = vertex_adjacency(faces, w.shape[0], edges)
    has_nbr = (np.asarray(adj.sum(axis=1)).ravel() > 0)[:, None]
    for _ in range(int(iterations)):
        w = np.where(has_nbr, (1.0 - strength) * w + strength * (adj @ w), w)
    return normalize_rows(w)


def diffuse_weights(w: np.ndarray, vertices: np.ndarray, faces: np.ndarray, radius: float,
                    edges: np.ndarray | None = None,
                    progress: Optional[Callable[[float], None]] = None) -> np.ndarray:
    """Heat diffusion of the weights over the mesh surface for a reach given in units of the mesh's
    size, so that it blurs a 1 000- and a 13 000-vertex character alike (:func:`smooth_weights`
    counts mesh edges instead).

    One implicit step (M + t L) w' = M w, with M the lumped vertex areas and L the graph Laplacian
    whose edge weights are the mean area of the edge's ends over its squared length (a density-
    independent discretisation), t = (radius * bounding-box diagonal)^2 / 2: a kernel of standard
    deviation about ``radius`` diagonals. Separate pieces never mix. w (V, J), vertices (V, 3),
    faces (F, 3) -> (V, J) float64 rows summing to 1; radius <= 0 returns the normalised input.
    edges: the (E, 2) :func:`mesh_edges` of ``faces`` when already known; progress: called with the
    share of the columns solved (it may raise to stop).

    The matrix is symmetric positive definite: it is factorised once with a symmetric ordering, and
    solved one column at a time (SuperLU's many-column solve is about 10x slower per column); an
    all-zero column (a bone nobody carries) stays zero without a solve.
    """
    return _diffuse_in_place(_normalized(w), vertices, faces, radius, edges, progress)


def _diffuse_in_place(w: np.ndarray, vertices: np.ndarray, faces: np.ndarray, radius: float,
                      edges: np.ndarray | None, progress: Optional[Callable[[float], None]]) -> np.ndarray:
    """:func:`diffuse_weights` of (V, J) float64 ``w`` whose rows already sum to 1, overwriting it
    (each column's solution replaces the column once its right-hand side is formed); returns ``w``."""
    from scipy.sparse.linalg import splu

    e = mesh_edges(faces) if edges is None else edges
    if radius <= 0.0 or len(e) == 0:
        return w
    x = np.asarray(vertices, np.float64)
    n = len(x)
    mass = vertex_areas(x, faces)
    mass = np.maximum(mass, 1e-9 * max(float(mass.mean()), 1e-30))
    length2 = np.sum((x[e[:, 0]] - x[e[:, 1]]) ** 2, axis=1)
    length2 = np.maximum(length2, (1e-3 * max(float(np.sqrt(np.median(length2))), 1e-12)) ** 2)
    c = 0.5 * (mass[e[:, 0]] + mass[e[:, 1]]) / length2
    lap = sparse.csr_matrix((np.concatenate([-c, -c]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                        np.concatenate([e[:, 1], e[:, 0]]))), shape=(n, n))
    lap = lap - sparse.diags(np.asarray(lap.sum(axis=1)).ravel())
    diag = float(np.linalg.norm(x.max(axis=0) - x.min(axis=0)))
    t = 0.5 * (radius * diag) ** 2
    solve = splu((sparse.diags(mass) + t * lap).tocsc(), permc_spec="MMD_AT_PLUS_A",
                 options={"SymmetricMode": True}, diag_pivot_thresh=0.0)
    cols = np.flatnonzero(w.any(axis=0))  # an all-zero column stays zero
    for n_done, j in enumerate(cols):
        if progress is not None:
            progress(n_done / len(cols))
        w[:, j] = solve.solve(mass * w[:, j])
    if progress is not None:
        progress(1.0)
    del solve
    return _normalize_in_chunks(w)


#: The share of :func:`postprocess`'s progress taken by the diffusion (its solve dominates).
DIFFUSION_SHARE = 0.8

#: Rows cleaned up at a time after the diffusion (the row-wise steps need a few (rows, J) copies).
ROW_CHUNK = 65536


def _normalize_in_chunks(w: np.ndarray) -> np.ndarray:
    """:func:`normalize_rows` of a (V, J) float64 array, written back into it chunk by chunk."""
    for s in range(0, w.shape[0], ROW_CHUNK):
        w[s:s + ROW_CHUNK] = normalize_rows(w[s:s + ROW_CHUNK])
    return w


def _normalized(w: np.ndarray, allowed: np.ndarray | None = None, finite: bool = False) -> np.ndarray:
    """:func:`normalize_rows` of (V, J) ``w`` into a new float64 array, chunk by chunk (one full-size
    copy instead of several); ``finite``: NaN and inf count as 0 first."""
    w = np.asarray(w)
    out = np.empty(w.shape, np.float64)
    for s in range(0, w.shape[0], ROW_CHUNK):
        rows = w[s:s + ROW_CHUNK]
        if finite:
            rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
        out[s:s + ROW_CHUNK] = normalize_rows(rows, allowed)
    return out


#: Default prune threshold, chosen on rigs/val with the shipped model 1.x (docs/history/model_2.2.md): 0.05 gives a
#: lower per-vertex L1 and a better precision/recall balance than 0.01.
DEFAULT_PRUNE = 0.05


def postprocess(w: np.ndarray, faces: np.ndarray | None = None, max_influences: int = 4, prune: float = DEFAULT_PRUNE,
                smooth: int = 0, allowed: np.ndarray | None = None, sharpen: float = 1.0, diffuse: float = 0.0,
                vertices: np.ndarray | None = None, edges: np.ndarray | None = None,
                progress: Optional[Callable[[float], None]] = None) -> np.ndarray:
    """The runtime's clean-up of (V, J) predicted weights -> (V, J) float32 rows summing to 1.

    Order: zero the columns not ``allowed`` ((J,) bool, e.g. non-deform bones), renormalise,
    ``smooth`` Laplacian iterations over ``faces`` (F, 3), heat diffusion over the surface with a reach
    of ``diffuse`` % of the bounding-box diagonal of ``vertices`` (V, 3) (:func:`diffuse_weights`),
    sharpen (w ** ``sharpen``), limit to
    ``max_influences`` (0 = no limit), prune below ``prune``, renormalise. Continuous in ``w``
    (see :func:`limit_influences`). The steps after the diffusion work on one row at a time and run
    over chunks of :data:`ROW_CHUNK` rows. edges: the (E, 2) :func:`mesh_edges` of ``faces`` when
    already known; progress: called with the share of the clean-up done (0-1; the diffusion, when
    on, counts for :data:`DIFFUSION_SHARE`), which may raise to stop it.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"weights must be (V, J), got shape {w.shape}")
    if max_influences < 0:
        raise ValueError(f"max_influences must be >= 0 (0 = unlimited), got {max_influences}")
    if not 0.0 <= prune < 1.0:
        raise ValueError(f"prune must be in [0, 1), got {prune}")
    if smooth > 0 and faces is None:
        raise ValueError("smoothing needs the mesh faces")
    if diffuse > 0.0 and (faces is None or vertices is None):
        raise ValueError("diffusion needs the mesh vertices and faces")
    out = _normalized(w, allowed, finite=True)
    if smooth > 0:
        out = smooth_weights(out, faces, smooth, edges=edges)
    if diffuse > 0.0:
        solved = None if progress is None else (lambda share: progress(DIFFUSION_SHARE * share))
        out = _diffuse_in_place(out, vertices, faces, diffuse / 100.0, edges, solved)
    result = np.empty(out.shape, np.float32)
    first = DIFFUSION_SHARE if diffuse > 0.0 else 0.0
    for s in range(0, out.shape[0], ROW_CHUNK):
        if progress is not None:
            progress(first + (1.0 - first) * s / out.shape[0])
        rows = sharpen_weights(out[s:s + ROW_CHUNK], sharpen)
        rows = limit_influences(rows, max_influences)
        rows = prune_weights(rows, prune)
        rows = normalize_rows(rows, allowed).astype(np.float32)
        # float32 rounding: renormalise once more in float32
        result[s:s + ROW_CHUNK] = rows / rows.sum(axis=1, keepdims=True)
    if progress is not None:
        progress(1.0)
    return result
