"""Canonical frame: root joint at the origin, the character scaled into the unit sphere."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.rig import Rig, RigError


@dataclass(frozen=True)
class CanonicalFrame:
    """Maps world points p to canonical (p - origin) / scale and back."""

    origin: np.ndarray  # (3,) float64
    scale: float

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world -> (N, 3) float32 canonical."""
        return ((np.asarray(points, dtype=np.float64) - self.origin) / self.scale).astype(np.float32)

    def from_canonical(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) canonical -> (N, 3) float32 world."""
        return (np.asarray(points, dtype=np.float64) * self.scale + self.origin).astype(np.float32)


def root_index(rig: Rig) -> int:
    """The root used as origin: the first parentless deform bone, else the first parentless bone."""
    roots = np.flatnonzero(rig.parents < 0)
    deform_roots = [r for r in roots if rig.is_deform[r]]
    if deform_roots:
        return int(deform_roots[0])
    if len(roots):
        return int(roots[0])
    return 0


def canonical_frame(rig: Rig) -> CanonicalFrame:
    """Frame with the root joint's head at the origin and every vertex and joint inside the unit sphere."""
    origin = rig.joints[root_index(rig)].astype(np.float64)
    pts = np.concatenate([rig.vertices, rig.joints, rig.tails]).astype(np.float64)
    scale = float(np.sqrt(((pts - origin) ** 2).sum(axis=1).max()))
    if not np.isfinite(scale) or scale <= 1e-12:
        scale = 1.0
    return CanonicalFrame(origin=origin, scale=scale)


def canonical_deform_arrays(rig: Rig) -> tuple[CanonicalFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rig in its canonical frame, deform bones only: (frame, (V, 3) float32 vertices,
    (Jd, 3) float32 heads, (Jd, 3) float32 tails, (Jd,) int64 deform bone indices).
    Raises RigError when the skeleton has no deform bone."""
    deform = rig.deform_indices
    if len(deform) == 0:
        raise RigError(f"{rig.name}: the skeleton has no deform bone")
    frame = canonical_frame(rig)
    return (frame, frame.to_canonical(rig.vertices), frame.to_canonical(rig.joints[deform]),
            frame.to_canonical(rig.tails[deform]), deform)
