"""Deformation error: random poses, linear blend skinning, vertex distance and face artefacts (pure numpy).

Rest pose = bind pose (identity skinning matrices). A pose gives each bone a local rotation
about its head; rotations compose down the hierarchy. Formulas: docs/evaluation.md.
"""
from __future__ import annotations

import numpy as np

from backend.rig import Rig, hierarchy_order

#: default number of random poses and the largest per-joint rotation
DEFAULT_POSES = 10
DEFAULT_MAX_ANGLE_DEG = 30.0
#: a face is an artefact when its posed area differs from the truth's by this factor or more
AREA_FACTOR = 2.0
EMPTY_ROW_TOL = 1e-6


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle`` radians about ``axis`` (3,) (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def random_local_rotations(num_bones: int, num_poses: int = DEFAULT_POSES,
                           max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG, seed: int = 0) -> np.ndarray:
    """(P, J, 3, 3) float64: each bone rotated about a uniform random axis by an angle uniform in [0, max]."""
    rng = np.random.default_rng(seed)
    out = np.empty((num_poses, num_bones, 3, 3))
    for p in range(num_poses):
        axes = rng.normal(size=(num_bones, 3))
        axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
        angles = np.deg2rad(rng.uniform(0.0, max_angle_deg, size=num_bones))
        for j in range(num_bones):
            out[p, j] = axis_angle_matrix(axes[j], angles[j])
    return out


def global_transforms(joints: np.ndarray, parents: np.ndarray, local_rot: np.ndarray,
                      source: str = "<rig>") -> tuple[np.ndarray, np.ndarray]:
    """Skinning transforms x -> A_j x + b_j of one pose.

    joints: (J, 3) bone heads, parents: (J,), local_rot: (J, 3, 3) rotation of each bone about
    its head. Bone j moves as its parent, then rotates about its own (parent-moved) head:
    A_j = A_p R_j, b_j = A_p (h_j - R_j h_j) + b_p. Returns ((J, 3, 3), (J, 3)) float64.
    """
    h = np.asarray(joints, dtype=np.float64)
    J = h.shape[0]
    A = np.empty((J, 3, 3))
    b = np.empty((J, 3))
    for j in hierarchy_order(parents, source):
        R = local_rot[j]
        lb = h[j] - R @ h[j]
        p = int(parents[j])
        if p < 0:
            A[j], b[j] = R, lb
        else:
            A[j], b[j] = A[p] @ R, A[p] @ lb + b[p]
    return A, b


def linear_blend_skinning(vertices: np.ndarray, weights: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(V, 3) float64 posed vertices, like Blender's armature modifier.

    vertices (V, 3), weights (V, J), A (J, 3, 3), b (J, 3). Rows are normalised by their sum;
    a row summing to ~0 leaves its vertex at rest."""
    x = np.asarray(vertices, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    s = w.sum(axis=1, keepdims=True)
    live = s[:, 0] > EMPTY_ROW_TOL
    wn = np.where(live[:, None], w / np.where(live[:, None], s, 1.0), 0.0)
    J = A.shape[0]
    blend_a = (wn @ A.reshape(J, 9)).reshape(-1, 3, 3)  # (V, 3, 3) per-vertex blended matrix
    out = np.einsum("vab,vb->va", blend_a, x) + wn @ b
    out[~live] = x[~live]
    return out


def face_areas_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((F,) area, (F, 3) unit normal, zero for degenerate faces) float64."""
    v = np.asarray(vertices, dtype=np.float64)
    c = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n2 = np.linalg.norm(c, axis=1)
    return 0.5 * n2, np.where(n2[:, None] > 0, c / np.where(n2 > 0, n2, 1.0)[:, None], 0.0)


def face_artefacts(rest: np.ndarray, posed_true: np.ndarray, posed_pred: np.ndarray, faces: np.ndarray,
                   area_factor: float = AREA_FACTOR) -> np.ndarray:
    """(F,) bool: a face whose posed area under the prediction differs from its area under the truth
    by ``area_factor`` or more (either way), or whose predicted normal points away from the true one
    (n_pred . n_true < 0). Faces degenerate at rest are never flagged."""
    a0, _ = face_areas_normals(rest, faces)
    at, nt = face_areas_normals(posed_true, faces)
    ap, np_ = face_areas_normals(posed_pred, faces)
    tiny = 1e-12 * max(float(a0.max()) if len(a0) else 0.0, 1e-30)
    ok = a0 > tiny
    ratio = np.maximum(ap, tiny) / np.maximum(at, tiny)
    bad_area = np.abs(np.log(ratio)) >= np.log(area_factor)
    flip = (nt * np_).sum(axis=1) < 0.0
    return ok & (bad_area | flip)


def bbox_diagonal(points: np.ndarray) -> float:
    """Length of the axis-aligned bounding-box diagonal of (N, 3) points (1.0 if degenerate)."""
    d = float(np.linalg.norm(np.ptp(np.asarray(points, dtype=np.float64), axis=0)))
    return d if d > 1e-12 else 1.0


def deformation_error(rig: Rig, pred: np.ndarray, num_poses: int = DEFAULT_POSES,
                      max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG, seed: int = 0,
                      local_rot: np.ndarray | None = None) -> dict[str, float]:
    """Pose the rig with true and predicted weights (deform bones only) and compare.

    pred: (V, J). Over the vertices with ground-truth weight and the faces whose three corners
    all have it. Returns deform_mean / deform_max (vertex distance, % of the rest bounding-box
    diagonal, mean / max over poses and vertices) and artefact_frac (fraction of (face, pose)
    pairs flagged by :func:`face_artefacts`). ``local_rot`` (P, J, 3, 3) overrides the random poses.
    """
    if rig.weights is None:
        raise ValueError(f"{rig.name}: no ground-truth weights to compare with")
    cols = rig.deform_indices
    wt = np.asarray(rig.weights, dtype=np.float64)[:, cols]
    wp = np.asarray(pred, dtype=np.float64)[:, cols]
    mask = wt.sum(axis=1) > EMPTY_ROW_TOL
    faces = np.asarray(rig.faces, dtype=np.int64)
    fmask = mask[faces].all(axis=1)
    f = faces[fmask]
    diag = bbox_diagonal(rig.vertices)
    if local_rot is None:
        local_rot = random_local_rotations(rig.num_bones, num_poses, max_angle_deg, seed)
    if not mask.any():
        return {"deform_mean": 0.0, "deform_max": 0.0, "artefact_frac": 0.0}
    means, maxes, flagged = [], [], 0
    x = np.asarray(rig.vertices, dtype=np.float64)
    for rot in local_rot:
        A, b = global_transforms(rig.joints, rig.parents, rot, rig.name)
        pt = linear_blend_skinning(x, wt, A[cols], b[cols])
        pp = linear_blend_skinning(x, wp, A[cols], b[cols])
        d = np.linalg.norm(pt - pp, axis=1)[mask]
        means.append(d.mean())
        maxes.append(d.max())
        if len(f):
            flagged += int(face_artefacts(x, pt, pp, f).sum())
    n_pairs = len(f) * len(local_rot)
    return {
        "deform_mean": float(100.0 * np.mean(means) / diag),
        "deform_max": float(100.0 * np.max(maxes) / diag),
        "artefact_frac": float(flagged / n_pairs) if n_pairs else 0.0,
    }
