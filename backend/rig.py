"""The one rig type of the project: a mesh, a skeleton and optional skin weights.

Pure data + validation; no I/O, no torch. Every reader returns a :class:`Rig` and
every writer takes one.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np


class RigError(ValueError):
    """A rig (or the file it came from) is unusable; the message names the source and the problem."""


@dataclass
class Rig:
    """A rigged character.

    vertices: (V, 3) float32 rest-pose positions.
    faces: (F, 3) int32 triangles.
    joints: (J, 3) float32 bone heads.
    tails: (J, 3) float32 bone tails.
    parents: (J,) int32 parent index, -1 for a root.
    joint_names: J bone names.
    is_deform: (J,) bool, the bone deforms the mesh.
    weights: optional (V, J) float32 skin weights (rows sum to 1 or are all zero).
    mesh_part: optional (V,) int16 index into mesh_part_names.
    name: where the rig came from (file name), used in messages.
    """

    vertices: np.ndarray
    faces: np.ndarray
    joints: np.ndarray
    tails: np.ndarray
    parents: np.ndarray
    joint_names: list[str]
    is_deform: np.ndarray
    weights: Optional[np.ndarray] = None
    mesh_part: Optional[np.ndarray] = None
    mesh_part_names: Optional[list[str]] = None
    name: str = "<rig>"
    extra: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_bones(self) -> int:
        return int(self.joints.shape[0])

    @property
    def deform_indices(self) -> np.ndarray:
        """(Jd,) int64 indices of the deform bones."""
        return np.flatnonzero(self.is_deform).astype(np.int64)

    def without_weights(self) -> "Rig":
        return replace(self, weights=None)

    def with_weights(self, weights: np.ndarray) -> "Rig":
        return replace(self, weights=np.asarray(weights, dtype=np.float32))

    def copy(self) -> "Rig":
        return replace(
            self,
            vertices=self.vertices.copy(),
            faces=self.faces.copy(),
            joints=self.joints.copy(),
            tails=self.tails.copy(),
            parents=self.parents.copy(),
            joint_names=list(self.joint_names),
            is_deform=self.is_deform.copy(),
            weights=None if self.weights is None else self.weights.copy(),
            mesh_part=None if self.mesh_part is None else self.mesh_part.copy(),
            mesh_part_names=None if self.mesh_part_names is None else list(self.mesh_part_names),
            extra=dict(self.extra),
        )


def make_rig(
    vertices,
    faces,
    joints,
    parents,
    tails=None,
    joint_names=None,
    is_deform=None,
    weights=None,
    mesh_part=None,
    mesh_part_names=None,
    name: str = "<rig>",
    validate: bool = True,
) -> Rig:
    """Build a :class:`Rig` from array-likes with the right dtypes; tails default to the
    first child's head (or a short stub along the parent direction for leaves)."""
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(faces)
    if faces.dtype.kind == "f":
        bad = faces[~(np.isfinite(faces) & (faces == np.round(faces)))]
        if bad.size:
            raise RigError(f"{name}: face indices must be whole numbers, got {bad.size} that are not, such as "
                           f"{bad[:3].tolist()}")
    faces = faces.astype(np.int32).reshape(-1, 3)
    joints = np.asarray(joints, dtype=np.float32).reshape(-1, 3)
    parents = np.asarray(parents, dtype=np.int32).reshape(-1)
    J = joints.shape[0]
    if tails is None:
        tails = default_tails(joints, parents)
    tails = np.asarray(tails, dtype=np.float32).reshape(-1, 3)
    if joint_names is None:
        joint_names = [f"bone_{j:03d}" for j in range(J)]
    if is_deform is None:
        is_deform = np.ones(J, dtype=bool)
    rig = Rig(
        vertices=vertices,
        faces=faces,
        joints=joints,
        tails=tails,
        parents=parents,
        joint_names=[str(n) for n in joint_names],
        is_deform=np.asarray(is_deform, dtype=bool).reshape(-1),
        weights=None if weights is None else np.asarray(weights, dtype=np.float32),
        mesh_part=None if mesh_part is None else np.asarray(mesh_part, dtype=np.int16),
        mesh_part_names=None if mesh_part_names is None else [str(n) for n in mesh_part_names],
        name=name,
    )
    if validate:
        validate_rig(rig)
    return rig


def default_tails(joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(J, 3) tails: mean of the children's heads, or for a leaf the head pushed on by
    half the parent bone's length (a root leaf gets a small +Z stub)."""
    J = joints.shape[0]
    tails = np.empty_like(joints)
    scale = float(np.linalg.norm(np.ptp(joints, axis=0))) if J > 1 else 1.0
    for j in range(J):
        children = np.flatnonzero(parents == j)
        if len(children):
            tails[j] = joints[children].mean(axis=0)
            if np.linalg.norm(tails[j] - joints[j]) > 1e-8:
                continue
        p = parents[j]
        if p >= 0 and np.linalg.norm(joints[j] - joints[p]) > 1e-8:
            tails[j] = joints[j] + 0.5 * (joints[j] - joints[p])
        else:
            tails[j] = joints[j] + np.array([0.0, 0.0, 0.05 * max(scale, 1e-3)], dtype=joints.dtype)
    return tails


def hierarchy_order(parents: np.ndarray, source: str = "<rig>") -> np.ndarray:
    """(J,) bone indices ordered so that every parent comes before its children.

    Raises RigError when the parents form a cycle or point outside the skeleton.
    """
    parents = np.asarray(parents).reshape(-1)
    J = parents.shape[0]
    bad = np.flatnonzero((parents < -1) | (parents >= J))
    if len(bad):
        raise RigError(f"{source}: bone {int(bad[0])} has parent index {int(parents[bad[0]])} outside 0..{J - 1}")
    depth = np.full(J, -1, dtype=np.int64)
    for j in range(J):
        path = []
        k = j
        while k >= 0 and depth[k] < 0:
            if k in path:
                raise RigError(f"{source}: the bone parents form a cycle through bone {k}")
            path.append(k)
            k = int(parents[k])
            if len(path) > J:
                raise RigError(f"{source}: the bone parents form a cycle through bone {j}")
        base = -1 if k < 0 else depth[k]
        for i, b in enumerate(reversed(path)):
            depth[b] = base + 1 + i
    return np.argsort(depth, kind="stable")


def validate_rig(rig: Rig, require_weights: bool = False) -> None:
    """Check shapes, finiteness, index ranges, hierarchy and weights; raise RigError naming
    ``rig.name`` and the first problem found."""
    src = rig.name
    v, f = rig.vertices, rig.faces
    if v.ndim != 2 or v.shape[1] != 3:
        raise RigError(f"{src}: vertices must have shape (V, 3), got {v.shape}")
    if v.shape[0] == 0:
        raise RigError(f"{src}: the mesh is empty (no vertices)")
    if not np.all(np.isfinite(v)):
        raise RigError(f"{src}: vertex coordinates contain NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3:
        raise RigError(f"{src}: faces must have shape (F, 3), got {f.shape}")
    if f.shape[0] == 0:
        raise RigError(f"{src}: the mesh has no faces")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise RigError(f"{src}: face indices outside 0..{v.shape[0] - 1}")
    J = rig.joints.shape[0]
    if J == 0 or rig.joints.shape != (J, 3):
        raise RigError(f"{src}: the skeleton has no bones (joints shape {rig.joints.shape})")
    if rig.tails.shape != (J, 3):
        raise RigError(f"{src}: tails shape {rig.tails.shape} does not match {J} joints")
    if not (np.all(np.isfinite(rig.joints)) and np.all(np.isfinite(rig.tails))):
        raise RigError(f"{src}: joint or tail coordinates contain NaN or inf")
    if rig.parents.shape != (J,):
        raise RigError(f"{src}: parents shape {rig.parents.shape} does not match {J} joints")
    if len(rig.joint_names) != J:
        raise RigError(f"{src}: {len(rig.joint_names)} bone names for {J} joints")
    if rig.is_deform.shape != (J,):
        raise RigError(f"{src}: is_deform shape {rig.is_deform.shape} does not match {J} joints")
    if not rig.is_deform.any():
        raise RigError(f"{src}: the skeleton has no deform bone")
    hierarchy_order(rig.parents, src)
    if rig.weights is None:
        if require_weights:
            raise RigError(f"{src}: the rig has no weights")
    else:
        w = rig.weights
        if w.shape != (v.shape[0], J):
            raise RigError(f"{src}: weights have shape {w.shape}, expected ({v.shape[0]}, {J})")
        if not np.all(np.isfinite(w)):
            raise RigError(f"{src}: weights contain NaN or inf")
        if (w < -1e-6).any():
            raise RigError(f"{src}: weights contain negative values (min {float(w.min()):.4g})")
    if rig.mesh_part is not None and rig.mesh_part.shape != (v.shape[0],):
        raise RigError(f"{src}: mesh_part shape {rig.mesh_part.shape} does not match {v.shape[0]} vertices")


def sanitize_weights(weights: np.ndarray, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Clip negatives, renormalise rows to sum 1; returns ((V, J) float32, (V,) bool empty rows).

    Rows with no weight stay all zero and are reported in the mask.
    """
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    s = w.sum(axis=1, keepdims=True)
    empty = s[:, 0] <= tol
    w = np.where(s > tol, w / np.maximum(s, tol), 0.0)
    return w.astype(np.float32), empty
