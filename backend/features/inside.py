"""Inside/outside tests for triangle meshes: the generalised winding number.

The winding number of a closed, outward-oriented surface is 1 inside and 0 outside; for
meshes with holes, duplicated faces or several overlapping parts it degrades gracefully
(about 0.5 at a hole, about 2 where two closed parts overlap), so ``w > 0.5`` is a robust
"inside" test (Jacobson et al. 2013, "Robust inside-outside segmentation").
"""
from __future__ import annotations

import numpy as np


def winding_number(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                   chunk_elems: int = 4_000_000) -> np.ndarray:
    """Generalised winding number of every point with respect to the triangle mesh.

    vertices (V, 3), faces (F, 3) int, points (N, 3). Returns (N,) float64: the sum over
    faces of the signed solid angle (Van Oosterom-Strackee formula) divided by 4 pi.
    Positive inside an outward-oriented (counter-clockwise seen from outside) surface.
    Works in chunks of ``chunk_elems`` point-face pairs to bound memory.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(p), dtype=np.float64)
    if len(f) == 0 or len(p) == 0:
        return out
    t0, t1, t2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]  # (F, 3) each
    step = max(1, int(chunk_elems // max(len(f), 1)))
    for s in range(0, len(p), step):
        q = p[s:s + step, None, :]  # (n, 1, 3)
        a, b, c = t0[None] - q, t1[None] - q, t2[None] - q  # (n, F, 3)
        la, lb, lc = (np.linalg.norm(x, axis=2) for x in (a, b, c))
        det = np.einsum("nfk,nfk->nf", a, np.cross(b, c))
        den = (la * lb * lc + np.einsum("nfk,nfk->nf", a, b) * lc
               + np.einsum("nfk,nfk->nf", a, c) * lb + np.einsum("nfk,nfk->nf", b, c) * la)
        out[s:s + step] = np.arctan2(det, den).sum(axis=1) * 2.0 / (4.0 * np.pi)
    return out


def is_inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
              threshold: float = 0.5) -> np.ndarray:
    """(N,) bool: the winding number of each point exceeds ``threshold``."""
    return winding_number(vertices, faces, points) > threshold


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (positive for an outward-oriented closed mesh)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    return float(np.einsum("fk,fk->f", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)
