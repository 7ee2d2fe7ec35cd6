"""Rigid separate pieces: a small separate part (an eye, a gun, a robot plate) moves with one bone.

Artists skin most small separate pieces rigidly (69-100 % of the pieces under 5 % of a mesh, by
split: docs/history/ablation.md). The network mostly picks the right bone for such a piece but spreads a
little weight over its neighbours, which a rigid part shows as a bend. Here a piece becomes rigid,
all of it on one bone, when three cues agree:

* it is small: under ``max_share`` of the mesh surface, and the mesh has more than one piece;
* the predicted weights agree on its bone: the bone with the largest mean weight over the piece is
  also the largest weight of at least ``min_agreement`` of its vertices (a piece the network bends
  on purpose, such as a sleeve over an elbow, stays as it is);
* the geometry agrees: that bone is the one nearest to the piece's centroid, or the one with the
  smallest mean distance to its vertices (distances to bone segments).

Rule and thresholds chosen on val and the out-of-style check (the study: docs/history/model_2.2.md).
Pure numpy (+ scipy through backend.features.pieces).
"""
from __future__ import annotations

import numpy as np

from backend.features.geometry import point_segment_distance
from backend.features.pieces import piece_area_shares, piece_rows

#: pieces with less than this share of the surface area may become rigid
RIGID_MAX_SHARE = 0.05
#: share of a piece's vertices whose own strongest bone must be the piece's bone
RIGID_MIN_AGREEMENT = 0.8


def rigid_pieces(weights: np.ndarray, vertices: np.ndarray, faces: np.ndarray, heads: np.ndarray,
                 tails: np.ndarray, allowed: np.ndarray, max_share: float = RIGID_MAX_SHARE,
                 min_agreement: float = RIGID_MIN_AGREEMENT, pieces: tuple[int, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, list[int]]:
    """Make the qualifying small pieces rigid.

    weights (V, J) rows summing to 1, vertices (V, 3), faces (F, 3), heads / tails (J, 3) bone
    segments, allowed (J,) bool bones that may carry weight. Returns ((V, J) float32 weights, the
    bone index given to each piece made rigid, one entry per piece). Rows of other pieces are
    returned unchanged. pieces: the mesh's (P, labels) when already known.
    """
    w = np.asarray(weights, np.float32)
    allowed = np.asarray(allowed, bool)
    out = w.copy()
    chosen: list[int] = []
    if len(faces) == 0 or not allowed.any():
        return out, chosen
    count, labels, _area, share = piece_area_shares(vertices, faces, pieces)
    if count < 2:
        return out, chosen
    small = np.flatnonzero(share < max_share)
    if len(small) == 0:
        return out, chosen
    cols = np.flatnonzero(allowed)
    heads_a = np.asarray(heads, np.float32)[cols]
    tails_a = np.asarray(tails, np.float32)[cols]
    verts = np.asarray(vertices, np.float32)
    members = piece_rows(labels, count)
    for p in small:
        idx = members[p]
        if len(idx) == 0:
            continue
        rows = w[idx]
        bone = int(rows.mean(axis=0).argmax())
        if not allowed[bone] or (rows.argmax(axis=1) == bone).mean() < min_agreement:
            continue
        centroid_dist, _ = point_segment_distance(verts[idx].mean(axis=0, keepdims=True), heads_a, tails_a)
        vertex_dist, _ = point_segment_distance(verts[idx], heads_a, tails_a)
        near_centroid = int(cols[centroid_dist[0].argmin()])
        near_vertices = int(cols[vertex_dist.mean(axis=0).argmin()])
        if bone not in (near_centroid, near_vertices):
            continue
        out[idx] = 0.0
        out[idx, bone] = 1.0
        chosen.append(bone)
    return out, chosen
