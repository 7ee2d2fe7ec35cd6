"""Closed analytic triangle meshes (boxes, cylinders, spheres, tori) for rigid parts.

Every shape starts from the subdivided cube surface ``cube_grid(n)`` on [-1, 1]^3 and is
mapped into place; all results are closed, outward oriented and welded.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]  # (V, 3) float64 vertices, (F, 3) int64 faces


@lru_cache(maxsize=64)
def _cube_grid(n: int) -> Mesh:
    g = np.linspace(-1.0, 1.0, n + 1)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    i = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]
    quads = np.stack([i, i + (n + 1), i + (n + 2), i + 1], axis=-1).reshape(-1, 4)
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    verts, faces = [], []
    for k in range(3):
        for s in (-1.0, 1.0):
            p = np.zeros(((n + 1) ** 2, 3))
            others = [a for a in range(3) if a != k]
            p[:, k] = s
            p[:, others[0]] = uu.ravel()
            p[:, others[1]] = vv.ravel()
            f = tri.copy()
            nrm = np.cross(p[f[0, 1]] - p[f[0, 0]], p[f[0, 2]] - p[f[0, 0]])
            if nrm[k] * s < 0:
                f = f[:, ::-1]
            faces.append(f + sum(len(x) for x in verts))
            verts.append(p)
    v = np.concatenate(verts)
    f = np.concatenate(faces)
    key = np.round((v + 1.0) * n).astype(np.int64)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    v = v[first]
    f = inv.reshape(-1)[f]
    v.setflags(write=False)
    f.setflags(write=False)
    return v, f


def cube_grid(n: int) -> Mesh:
    """Surface of [-1, 1]^3 split into n x n quads per side: ((6n^2+2, 3), (12n^2, 3))."""
    v, f = _cube_grid(max(1, int(n)))
    return v.copy(), f.copy()


def _place(local: np.ndarray, center, axes, half) -> np.ndarray:
    """local (N, 3) -> world: center + (local * half) @ axes, axes (3, 3) rows = local x, y, z."""
    return np.asarray(center, float) + (local * np.asarray(half, float)) @ np.asarray(axes, float)


def box(center, axes, half, n: int = 4) -> Mesh:
    """Box with half sizes ``half`` (3,) along the rows of ``axes`` (3, 3)."""
    v, f = cube_grid(n)
    return _place(v, center, axes, half), f


def cylinder(center, axes, half, n: int = 4) -> Mesh:
    """Elliptic cylinder along local z (axes row 2), radii half[0], half[1], half length half[2]."""
    v, f = cube_grid(n)
    x, y = v[:, 0], v[:, 1]
    v = np.stack([x * np.sqrt(1 - y * y / 2), y * np.sqrt(1 - x * x / 2), v[:, 2]], axis=1)
    return _place(v, center, axes, half), f


def ellipsoid(center, axes, half, n: int = 4) -> Mesh:
    """Ellipsoid (a cube-sphere) with semi-axes ``half`` along the rows of ``axes``."""
    v, f = cube_grid(n)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return _place(v, center, axes, half), f


def sphere(center, radius: float, n: int = 4) -> Mesh:
    return ellipsoid(center, np.eye(3), (radius, radius, radius), n)


def tapered_box(a, b, width: float, up, taper: float = 0.2, n: int = 3) -> Mesh:
    """Square-section box from point a to point b whose section shrinks to ``taper`` x at b (a tooth, a spike)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    axes = frame_from_direction(b - a, up)
    v, f = cube_grid(n)
    t = (v[:, 2] + 1) / 2
    s = 1 - (1 - taper) * t
    length = float(np.linalg.norm(b - a))
    local = np.stack([v[:, 0] * s * width, v[:, 1] * s * width, t * length], axis=1)
    return a + local @ axes, f


def torus(center, axes, major: float, minor: float, nu: int = 24, nv: int = 8) -> Mesh:
    """Torus around local z with ring radius ``major`` and tube radius ``minor``."""
    u = 2 * np.pi * np.arange(nu) / nu
    w = 2 * np.pi * np.arange(nv) / nv
    uu, ww = np.meshgrid(u, w, indexing="ij")
    r = major + minor * np.cos(ww)
    local = np.stack([r * np.cos(uu), r * np.sin(uu), minor * np.sin(ww)], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a = i * nv + j
    b = ((i + 1) % nu) * nv + j
    c = ((i + 1) % nu) * nv + (j + 1) % nv
    d = i * nv + (j + 1) % nv
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    v = _place(local, center, axes, (1.0, 1.0, 1.0))
    if _signed_volume(v, f) < 0:
        f = f[:, ::-1]
    return v, f


def frame_from_direction(direction, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(3, 3) orthonormal rows (x, y, z) with z along ``direction`` and x as close to ``up`` x z as possible."""
    z = np.asarray(direction, float)
    z = z / max(np.linalg.norm(z), 1e-12)
    up = np.asarray(up, float)
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross((1.0, 0.0, 0.0) if abs(z[0]) < 0.9 else (0.0, 1.0, 0.0), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def merge(meshes: list[Mesh]) -> Mesh:
    """Concatenate meshes into one (parts stay separate connected components)."""
    if not meshes:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    vs, fs, off = [], [], 0
    for v, f in meshes:
        vs.append(np.asarray(v, float))
        fs.append(np.asarray(f, np.int64) + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    return float(np.einsum("fk,fk->f", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)
