"""Body surfaces: a smooth union of round cones and ellipsoids, sampled on a regular grid and
meshed with marching cubes.

Each volume is evaluated only inside its own padded bounding box (vectorised numpy), the
union uses a polynomial smooth minimum (which never shrinks a volume, so every bone axis
stays inside), and the grid step is picked from the estimated surface area so that the
mesh lands near a requested vertex count.
"""
from __future__ import annotations

import numpy as np
from skimage.measure import marching_cubes

from backend.features.inside import signed_volume

# Marching cubes gives about one vertex per VERTS_PER_AREA^-1 h^2 of surface (measured).
VERTS_PER_AREA = 1.9


def _round_cone(px, py, pz, a, b, r0, r1) -> np.ndarray:
    """Approximate signed distance to the round cone a->b (radius r0 at a, r1 at b) on an open grid."""
    ab = b - a
    L2 = max(float(ab @ ab), 1e-20)
    dx, dy, dz = px - a[0], py - a[1], pz - a[2]
    t = np.clip((dx * ab[0] + dy * ab[1] + dz * ab[2]) / L2, 0.0, 1.0)
    ex, ey, ez = dx - t * ab[0], dy - t * ab[1], dz - t * ab[2]
    return np.sqrt(ex * ex + ey * ey + ez * ez) - (r0 + t * (r1 - r0))


def _ellipsoid(px, py, pz, c, axes, radii) -> np.ndarray:
    """Approximate signed distance to an oriented ellipsoid (exact sign, distance scaled by min radius)."""
    dx, dy, dz = px - c[0], py - c[1], pz - c[2]
    k = 0.0
    for i in range(3):
        q = (dx * axes[i, 0] + dy * axes[i, 1] + dz * axes[i, 2]) / radii[i]
        k = k + q * q
    return (np.sqrt(k) - 1.0) * float(radii.min())


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (<= min(a, b)); k = 0 is the plain minimum."""
    if k <= 0:
        return np.minimum(a, b)
    hh = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - hh) + a * hh - k * hh * (1.0 - hh)


def estimate_area(capsules: list, ellipsoids: list) -> float:
    """Rough surface area of the union (overlaps ignored, one half-sphere cap per cone)."""
    area = 0.0
    for a, b, r0, r1, _ in capsules:
        L = float(np.linalg.norm(np.asarray(b) - np.asarray(a)))
        area += np.pi * (r0 + r1) * L + np.pi * (r0 * r0 + r1 * r1)
    for _, _, rad, _ in ellipsoids:
        p = 1.6075
        a, b, c = rad
        area += 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    return float(area)


def thicken(capsules: list, ellipsoids: list, min_radius: float) -> tuple[list, list]:
    """Volumes with every radius raised to ``min_radius`` so the grid resolves them."""
    caps = [(a, b, max(r0, min_radius), max(r1, min_radius), j) for a, b, r0, r1, j in capsules]
    ells = [(c, ax, np.maximum(rad, min_radius), j) for c, ax, rad, j in ellipsoids]
    return caps, ells


def sample_field(capsules: list, ellipsoids: list, h: float, blend: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth-union distance field on a grid of step h. Returns ((nx, ny, nz) float32, (3,) origin)."""
    boxes = []
    for a, b, r0, r1, _ in capsules:
        r = max(r0, r1)
        boxes.append((np.minimum(a, b) - r, np.maximum(a, b) + r))
    for c, _, rad, _ in ellipsoids:
        boxes.append((c - rad.max(), c + rad.max()))
    pad = blend + 2.5 * h
    lo = np.min([bx[0] for bx in boxes], axis=0) - pad - h
    hi = np.max([bx[1] for bx in boxes], axis=0) + pad + h
    shape = np.ceil((hi - lo) / h).astype(int) + 1
    far = np.float32(blend + 4 * h)
    field = np.full(tuple(shape), far, dtype=np.float32)
    axes = [(lo[i] + h * np.arange(shape[i])).astype(np.float32) for i in range(3)]

    def window(blo, bhi):
        i0 = np.clip(np.floor((blo - pad - lo) / h).astype(int), 0, shape)
        i1 = np.clip(np.ceil((bhi + pad - lo) / h).astype(int) + 1, 0, shape)
        sl = tuple(slice(i0[k], i1[k]) for k in range(3))
        px = axes[0][sl[0]][:, None, None]
        py = axes[1][sl[1]][None, :, None]
        pz = axes[2][sl[2]][None, None, :]
        return sl, px, py, pz

    k = 0
    for a, b, r0, r1, _ in capsules:
        sl, px, py, pz = window(*boxes[k])
        k += 1
        d = _round_cone(px, py, pz, a.astype(np.float32), b.astype(np.float32), np.float32(r0), np.float32(r1))
        field[sl] = _smin(d.astype(np.float32), field[sl], blend)
    for c, ax, rad, _ in ellipsoids:
        sl, px, py, pz = window(*boxes[k])
        k += 1
        d = _ellipsoid(px, py, pz, c.astype(np.float32), ax.astype(np.float32), rad.astype(np.float32))
        field[sl] = _smin(d.astype(np.float32), field[sl], blend)
    return field, lo


def polygonise(field: np.ndarray, origin: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the zero level (inside negative): ((V, 3) float64, (F, 3) int64), outward faces."""
    v, f, _, _ = marching_cubes(field, 0.0, spacing=(h, h, h), allow_degenerate=False)
    v = v.astype(np.float64) + origin
    f = f.astype(np.int64)
    if signed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
    return v, f


def mesh_body(capsules: list, ellipsoids: list, target_vertices: int, blend_frac: float = 0.4,
              min_vertices: int = 1000, max_vertices: int = 20000, max_voxels: int = 6_000_000
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Mesh the smooth union near ``target_vertices`` vertices.

    Returns ((V, 3) float64, (F, 3) int64, grid step h). Radii below 1.25 h are raised to it;
    the step is corrected (at most twice) when the count leaves [min_vertices, max_vertices]
    or misses the target by more than a factor 1.6.
    """
    area = estimate_area(capsules, ellipsoids)
    h = float(np.sqrt(area / (VERTS_PER_AREA * target_vertices)))
    radii = [max(r0, r1) for _, _, r0, r1, _ in capsules] + [float(np.sort(r)[1]) for _, _, r, _ in ellipsoids]
    v = f = None
    for _attempt in range(3):
        caps, ells = thicken(capsules, ellipsoids, 1.25 * h)
        blend = blend_frac * float(np.median(radii)) if radii else 0.0
        blend = max(blend, 0.5 * h)
        ext = _extent(caps, ells) + 2 * (blend + 4 * h)
        while np.prod(ext / h) > max_voxels:
            h *= 1.15
        field, lo = sample_field(caps, ells, h, blend)
        v, f = polygonise(field, lo, h)
        n = len(v)
        ratio = n / target_vertices
        if min_vertices <= n <= max_vertices and 1 / 1.6 <= ratio <= 1.6:
            break
        want = float(np.clip(target_vertices, min_vertices * 1.3, max_vertices / 1.3))
        h *= float(np.sqrt(n / want))
    return v, f, h


def _extent(caps: list, ells: list) -> np.ndarray:
    pts = [p for a, b, r0, r1, _ in caps for p in (a - max(r0, r1), b + max(r0, r1), a + max(r0, r1),
                                                   b - max(r0, r1))]
    pts += [p for c, _, rad, _ in ells for p in (c - rad.max(), c + rad.max())]
    pts = np.asarray(pts)
    return pts.max(axis=0) - pts.min(axis=0)
