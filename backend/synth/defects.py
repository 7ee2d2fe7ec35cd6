"""Mesh defects that real assets have: holes (deleted faces), duplicated faces and
non-manifold edges (fins). Holes are kept away from the given protected points (joints)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def punch_holes(vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator, count: int,
                radius: float, protect: np.ndarray) -> np.ndarray:
    """(F', 3) faces without those whose centroid lies within ``radius`` of ``count`` random
    centres; centres closer than 4 radius to a protected point (P, 3) are not used."""
    cent = vertices[faces].mean(axis=1)
    far = cKDTree(protect).query(cent, k=1)[0] > 4 * radius
    cand = np.flatnonzero(far)
    if len(cand) == 0:
        return faces
    centres = cent[rng.choice(cand, size=min(count, len(cand)), replace=False)]
    d = cKDTree(centres).query(cent, k=1)[0]
    keep = d > radius
    if keep.sum() < 0.9 * len(faces):  # never remove a large part of the surface
        return faces
    return faces[keep]


def duplicate_faces(faces: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Faces with a random ``fraction`` of them appended again (same vertex indices)."""
    k = max(1, int(len(faces) * fraction))
    return np.concatenate([faces, faces[rng.choice(len(faces), size=k, replace=False)]])


def add_fins(vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator, count: int,
             size: float) -> tuple[np.ndarray, np.ndarray]:
    """Add ``count`` single triangles on existing edges, sticking out along the face normal:
    each such edge is then shared by three faces (non-manifold)."""
    pick = rng.choice(len(faces), size=min(count, len(faces)), replace=False)
    f = faces[pick]
    a, b, c = vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    tip = (a + b) / 2 + n * size
    idx = len(vertices) + np.arange(len(f))
    fins = np.stack([f[:, 0], f[:, 1], idx], axis=1)
    return np.concatenate([vertices, tip]), np.concatenate([faces, fins])


def drop_unused(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove vertices no face uses. Returns (vertices, faces, (V_old,) bool kept mask)."""
    used = np.zeros(len(vertices), bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[faces], used
