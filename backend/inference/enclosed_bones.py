"""A separate piece that encloses exactly one bone moves with that bone alone.

Game mobs and robots are often built from separate boxes, one per bone, each box around its bone
and skinned rigidly to it (the 52 ``nssm_mobs`` of the styles data: 84-93 % of their pieces hold
the midpoint of exactly one bone, which is the artist's bone for 93-97 % of them). A network that
learned from bodies in one piece picks a neighbouring bone for many such boxes. Here a piece is
given to one bone when

* it is small: under ``max_share`` of the mesh surface, and the mesh has more than one piece;
* its convex hull holds the midpoint of exactly one deform bone (a piece holding none, such as an
  eye, or several, such as a sleeve over an elbow, stays as it is).

Chosen on the leave-domain-out folds (docs/crossval.md). Pure numpy + scipy.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from backend.features.pieces import piece_area_shares, piece_rows


def enclosed_points(piece: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Indices of ``points`` (N, 3) inside the convex hull of ``piece`` (M, 3) (on it counts, within
    1e-9 of the piece's size): first the bounding box, then the hull's half-spaces for the points that
    pass it. Empty for a flat or degenerate piece."""
    lo, hi = piece.min(axis=0), piece.max(axis=0)
    in_box = np.flatnonzero(np.all((points >= lo) & (points <= hi), axis=1))
    if len(in_box) == 0 or len(piece) < 4:
        return in_box[:0]
    try:
        planes = ConvexHull(piece).equations  # (H, 4): unit outward normal, offset
    except (QhullError, ValueError):  # all points on a plane or a line: it encloses nothing
        return in_box[:0]
    tol = 1e-9 * float(np.linalg.norm(hi - lo))
    dist = points[in_box] @ planes[:, :3].T + planes[:, 3]
    return in_box[np.all(dist <= tol, axis=1)]


def enclosed_bones(vertices: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                   allowed: np.ndarray, max_share: float, pieces: tuple[int, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, list[int]]:
    """The bone each vertex is given by the rule, from the geometry alone: ((V,) int64 bone, -1 for a
    vertex of a piece that does not qualify; the bone given to each qualifying piece). vertices (V, 3),
    faces (F, 3), heads / tails (J, 3) bone segments, allowed (J,) bool bones that may carry weight,
    max_share: pieces under this share of the surface qualify (0: none). pieces: the mesh's (P, labels)
    when already known."""
    bone_of = np.full(len(vertices), -1, np.int64)
    chosen: list[int] = []
    allowed = np.asarray(allowed, bool)
    if max_share <= 0.0 or len(faces) == 0 or not allowed.any():
        return bone_of, chosen
    count, labels, _area, share = piece_area_shares(vertices, faces, pieces)
    if count < 2:
        return bone_of, chosen
    cols = np.flatnonzero(allowed)
    mids = (0.5 * (np.asarray(heads, np.float64) + np.asarray(tails, np.float64)))[cols]
    verts = np.asarray(vertices, np.float64)
    members = piece_rows(labels, count)
    for p in np.flatnonzero(share < max_share):
        idx = members[p]
        inside = enclosed_points(verts[idx], mids)
        if len(inside) == 1:
            bone_of[idx] = cols[inside[0]]
            chosen.append(int(cols[inside[0]]))
    return bone_of, chosen


def give_to_bones(weights: np.ndarray, bone_of: np.ndarray) -> np.ndarray:
    """``weights`` (N, J) with each row whose ``bone_of`` (N,) is >= 0 replaced by that bone alone (a copy)."""
    out = np.array(weights, copy=True)
    rows = np.flatnonzero(bone_of >= 0)
    out[rows] = 0.0
    out[rows, bone_of[rows]] = 1.0
    return out

