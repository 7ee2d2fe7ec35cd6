"""Solid voxelisation of a triangle mesh, robust to holes, several parts and non-manifold edges.

The solid is the union of
* the surface shell: voxels hit by points sampled on every triangle (spacing below half a voxel,
  so the shell is 26-connected and blocks a 6-connected flood),
* ``binary_fill_holes`` of that shell (exact for closed meshes),
* a majority vote of ray-parity tests along the three axes (a hole only flips the parity of the
  rays that pass through it, so the other two axes out-vote it),
* any extra points the caller needs inside (bone samples).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# rays pass a little off the voxel centres so they never hit a mesh edge or vertex exactly
_RAY_JITTER = (1.2345e-4, 2.7183e-4)


@dataclass(frozen=True)
class VoxelGrid:
    """Axis-aligned grid: voxel (i, j, k) spans origin + h * [i, i+1) x ... ; shape (nx, ny, nz)."""

    origin: np.ndarray  # (3,) float64, corner of voxel (0, 0, 0)
    h: float  # voxel edge length
    shape: tuple[int, int, int]

    def index_of(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N, 3) int64 voxel index, clipped into the grid."""
        idx = np.floor((np.asarray(points, np.float64) - self.origin) / self.h).astype(np.int64)
        return np.clip(idx, 0, np.asarray(self.shape) - 1)

    def centers(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) int voxel index -> (N, 3) float64 voxel centres."""
        return self.origin + (np.asarray(index, np.float64) + 0.5) * self.h


def make_grid(points: np.ndarray, resolution: int, margin: int = 2) -> VoxelGrid:
    """Grid with ``resolution`` cells along the longest side of the points' bounding box,
    plus ``margin`` empty cells on every side."""
    if resolution < 2:
        raise ValueError(f"voxel resolution must be >= 2, got {resolution}")
    p = np.asarray(points, np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    extent = float((hi - lo).max())
    h = extent / resolution if extent > 1e-12 else 1e-3
    n = np.ceil((hi - lo) / h - 1e-9).astype(np.int64)
    n = np.maximum(n, 1) + 2 * margin
    origin = lo - margin * h - 0.5 * (n - 2 * margin - (hi - lo) / h) * h  # centre the box in the grid
    return VoxelGrid(origin=origin, h=h, shape=(int(n[0]), int(n[1]), int(n[2])))


def sample_triangles(vertices: np.ndarray, faces: np.ndarray, spacing: float) -> np.ndarray:
    """(P, 3) float64 points on every triangle (a barycentric lattice whose step is below
    ``spacing``), vertices included."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if len(f) == 0:
        return v.copy()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    longest = np.maximum.reduce([np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1),
                                 np.linalg.norm(a - c, axis=1)])
    n_sub = np.ceil(longest / spacing).astype(np.int64)
    out = [v]
    for n in np.unique(n_sub):
        if n <= 1:
            continue  # the lattice is the corners only: already in v
        sel = np.flatnonzero(n_sub == n)
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = (i + j) <= n
        u = (i[keep] / n)[None, :, None]
        w = (j[keep] / n)[None, :, None]
        pts = a[sel][:, None] + u * (b[sel] - a[sel])[:, None] + w * (c[sel] - a[sel])[:, None]
        out.append(pts.reshape(-1, 3))
    return np.concatenate(out)


def surface_shell(vertices: np.ndarray, faces: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(nx, ny, nz) bool voxels touched by the surface."""
    shell = np.zeros(grid.shape, bool)
    idx = grid.index_of(sample_triangles(vertices, faces, 0.5 * grid.h))
    shell[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return shell


def parity_inside(vertices: np.ndarray, faces: np.ndarray, grid: VoxelGrid, axis: int) -> np.ndarray:
    """(nx, ny, nz) bool: odd number of surface crossings on the ray along ``axis`` from the
    grid's low side to the voxel centre."""
    g = (np.asarray(vertices, np.float64) - grid.origin) / grid.h  # grid units
    f = np.asarray(faces, np.int64)
    u_ax, w_ax = [a for a in range(3) if a != axis]
    shape = grid.shape
    tri = g[f]  # (F, 3, 3)
    tu, tw, td = tri[:, :, u_ax], tri[:, :, w_ax], tri[:, :, axis]
    # rays at (iu + 0.5 + ju, iw + 0.5 + jw)
    ju, jw = _RAY_JITTER
    u0 = np.ceil(tu.min(axis=1) - 0.5 - ju).astype(np.int64)
    u1 = np.floor(tu.max(axis=1) - 0.5 - ju).astype(np.int64)
    w0 = np.ceil(tw.min(axis=1) - 0.5 - jw).astype(np.int64)
    w1 = np.floor(tw.max(axis=1) - 0.5 - jw).astype(np.int64)
    nu = np.maximum(u1 - u0 + 1, 0)
    nw = np.maximum(w1 - w0 + 1, 0)
    cnt = nu * nw
    total = int(cnt.sum())
    crossings = np.zeros(shape, np.int32)
    if total == 0:
        return crossings.astype(bool)
    t = np.repeat(np.arange(len(f)), cnt)
    start = np.repeat(np.cumsum(cnt) - cnt, cnt)
    local = np.arange(total) - start
    iu = u0[t] + local // nw[t]
    iw = w0[t] + local % nw[t]
    pu = iu + 0.5 + ju
    pw = iw + 0.5 + jw
    # 2D barycentric coordinates of the ray in the projected triangle
    au, aw = tu[t, 0], tw[t, 0]
    e1u, e1w = tu[t, 1] - au, tw[t, 1] - aw
    e2u, e2w = tu[t, 2] - au, tw[t, 2] - aw
    det = e1u * e2w - e2u * e1w
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    qu, qw = pu - au, pw - aw
    s = (qu * e2w - e2u * qw) / det
    r = (e1u * qw - qu * e1w) / det
    ok &= (s >= 0) & (r >= 0) & (s + r <= 1)
    depth = td[t, 0] + s * (td[t, 1] - td[t, 0]) + r * (td[t, 2] - td[t, 0])
    # the crossing lies before the centre of voxel k when k + 0.5 > depth
    k = np.ceil(depth - 0.5).astype(np.int64)
    k = np.clip(k, 0, shape[axis])
    ok &= (iu >= 0) & (iu < shape[u_ax]) & (iw >= 0) & (iw < shape[w_ax]) & (k < shape[axis])
    idx = [None, None, None]
    idx[u_ax], idx[w_ax], idx[axis] = iu[ok], iw[ok], k[ok]
    np.add.at(crossings, tuple(idx), 1)
    return (np.cumsum(crossings, axis=axis) & 1).astype(bool)


def voxelize(vertices: np.ndarray, faces: np.ndarray, grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
    """Solid voxels of a mesh. Returns ((nx, ny, nz) bool solid, (nx, ny, nz) bool surface shell)."""
    shell = surface_shell(vertices, faces, grid)
    solid = ndimage.binary_fill_holes(shell)
    if len(faces):
        votes = np.zeros(grid.shape, np.int8)
        for axis in range(3):
            votes += parity_inside(vertices, faces, grid, axis)
        solid |= votes >= 2
    return solid, shell
