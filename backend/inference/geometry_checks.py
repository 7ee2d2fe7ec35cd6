"""Checks that a rig can be skinned at all, made before any feature is computed: a mesh with no
size, or a skeleton nowhere near it, is refused; a skeleton mostly outside the mesh is warned about."""
from __future__ import annotations

import warnings

import numpy as np

from backend.rig import Rig, RigError

#: Smallest bounding-box diagonal of a mesh that can be skinned (float32 distances underflow below).
MIN_SIZE = 1e-6
#: A skeleton whose every bone end is farther than this many mesh diagonals from the mesh's box is refused.
MAX_GAP = 2.0
#: Warn when more than this share of the bone heads lie outside the mesh's box (grown by MARGIN diagonals).
OUTSIDE_SHARE = 0.5
MARGIN = 0.05


class GeometryWarning(UserWarning):
    """The rig can be skinned, but its skeleton and mesh look mismatched."""


def box_distance(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(N,) distance of each point to the axis-aligned box [low, high] (0 inside)."""
    return np.linalg.norm(np.maximum(np.maximum(low - points, points - high), 0.0), axis=1)


def check_geometry(rig: Rig) -> None:
    """RigError naming ``rig.name`` when the mesh has no usable size or the skeleton lies far from the
    mesh; a GeometryWarning when most bone heads lie outside the mesh's bounding box."""
    v = rig.vertices.astype(np.float64)
    low, high = v.min(axis=0), v.max(axis=0)
    size = float(np.linalg.norm(high - low))
    if not size >= MIN_SIZE:
        where = "all vertices lie at one point" if size == 0.0 else f"its bounding box is {size:.3g} across"
        raise RigError(f"{rig.name}: the mesh has no usable size ({where}); it needs at least {MIN_SIZE:g} "
                       f"units: scale the character up")
    ends = np.concatenate([rig.joints, rig.tails]).astype(np.float64)
    gap = float(box_distance(ends, low, high).min()) / size
    if gap > MAX_GAP:
        raise RigError(f"{rig.name}: the skeleton lies {gap:.3g} character sizes away from the mesh; "
                       f"are they in the same place and units?")
    outside = box_distance(rig.joints.astype(np.float64), low - MARGIN * size, high + MARGIN * size) > 0
    if outside.mean() > OUTSIDE_SHARE:
        warnings.warn(f"{rig.name}: {int(outside.sum())} of {len(outside)} bones start outside the mesh's "
                      f"bounding box; the skeleton may not fit this mesh", GeometryWarning, stacklevel=2)
