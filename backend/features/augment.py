"""Training augmentation of labelled rigs (pure numpy, seeded by a ``np.random.Generator``).

Every change keeps the rig consistent with its TRUE weights: small joint rotations pose the
mesh by linear-blend skinning with those weights (children follow their parents), per-bone
thickness scaling moves vertices away from / towards the bones they are bound to, and the
global steps (anisotropic axis scaling, root translation, vertex noise) move mesh and skeleton
together. Strengths are in canonical units (the character inside the unit sphere) and are
converted to the rig's own units with its canonical frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.features.frame import canonical_frame
from backend.features.geodesic import smooth_weights
from backend.rig import Rig, RigError, hierarchy_order


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths; 0 switches a step off (all zero: the identity)."""

    noise_sigma: float = 0.001  # vertex jitter, canonical units
    axis_scale: float = 0.05  # global per-axis scale factors drawn in [1 - s, 1 + s]
    thickness: float = 0.1  # per-bone scale of the distance to the bone, in [1 - s, 1 + s]
    rotation_deg: float = 5.0  # per-bone rotation angle drawn in [-a, a] degrees, random axis
    translation_sigma: float = 0.02  # root translation, canonical units
    label_smoothing: float = 0.1  # w <- (1 - s) w + s * mean of mesh neighbours' w
    remesh: float = 0.0  # probability of a tessellation change: midpoint subdivision or decimation
    remesh_max_vertices: int = 12000  # subdivision only when the result stays below this
    #: probability that a non-root bone loses its parent link and becomes a root of its own (with its
    #: children), as riggers do with IK feet, props and mechanical parts: the weights do not change,
    #: only the hierarchy the bone features describe (left out of cache keys while 0)
    detach: float = field(default=0.0, metadata={"key_omits_default": True})
    #: probability that a copy is detached at all (at the rate ``detach``); below 1 the other copies
    #: keep the whole hierarchy, so deep chains (spines, fingers) are still seen intact
    detach_copies: float = field(default=1.0, metadata={"key_omits_default": True})


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, np.float64)
    a = a / max(np.linalg.norm(a), 1e-20)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * (K @ K)


def pose_rig(rig: Rig, rotations: np.ndarray) -> Rig:
    """Pose a weighted rig: bone j turns by ``rotations[j]`` (J, 3, 3) about its own head, on top
    of its parent's motion. Vertices move by linear-blend skinning with ``rig.weights``; heads and
    tails move with their bones. Rows with no weight stay in place. Returns a new Rig."""
    if rig.weights is None:
        raise RigError(f"{rig.name}: posing needs the rig's weights")
    J = rig.num_bones
    R = np.asarray(rotations, np.float64).reshape(J, 3, 3)
    heads = rig.joints.astype(np.float64)
    tails = rig.tails.astype(np.float64)
    # world transform of each bone: x -> A_j x + b_j
    A = np.zeros((J, 3, 3))
    b = np.zeros((J, 3))
    for j in hierarchy_order(rig.parents, rig.name):
        local_A, local_b = R[j], heads[j] - R[j] @ heads[j]  # rotation about the rest head
        p = int(rig.parents[j])
        if p >= 0:
            A[j], b[j] = A[p] @ local_A, A[p] @ local_b + b[p]
        else:
            A[j], b[j] = local_A, local_b
    new_heads = np.empty_like(heads)
    for j in range(J):
        p = int(rig.parents[j])
        new_heads[j] = heads[j] if p < 0 else A[p] @ heads[j] + b[p]
    new_tails = np.einsum("jab,jb->ja", A, tails) + b
    w = rig.weights.astype(np.float64)
    s = w.sum(axis=1)
    blend = w @ np.concatenate([A.reshape(J, 9), b], axis=1)  # (V, 12)
    v = rig.vertices.astype(np.float64)
    moved = np.einsum("vab,vb->va", blend[:, :9].reshape(-1, 3, 3), v) + blend[:, 9:]
    moved = np.where(s[:, None] > 1e-8, moved + (1 - s)[:, None] * v, v)  # rows not summing to 1
    out = rig.copy()
    out.vertices = moved.astype(np.float32)
    out.joints = new_heads.astype(np.float32)
    out.tails = new_tails.astype(np.float32)
    return out


def _thicken(rig: Rig, factors: np.ndarray) -> np.ndarray:
    """(V, 3) vertices whose offset from their bones is scaled by the weight-blend of ``factors`` (J,)."""
    v = rig.vertices.astype(np.float64)
    a = rig.joints.astype(np.float64)
    ab = rig.tails.astype(np.float64) - a
    w = rig.weights.astype(np.float64)
    out = v.copy()
    for j in np.flatnonzero(w.max(axis=0) > 0):
        rows = np.flatnonzero(w[:, j] > 0)
        t = np.clip(((v[rows] - a[j]) @ ab[j]) / max(ab[j] @ ab[j], 1e-20), 0.0, 1.0)
        foot = a[j] + t[:, None] * ab[j]
        out[rows] += (w[rows, j] * (factors[j] - 1.0))[:, None] * (v[rows] - foot)
    return out


def subdivide_rig(rig: Rig) -> Rig:
    """Midpoint subdivision: every triangle -> 4, one new vertex per edge whose weights (and
    mesh part) are the mean of the edge's two ends. The surface does not change; the density
    goes up about 4x. Returns a new Rig."""
    f = np.asarray(rig.faces, np.int64)
    V = rig.num_vertices
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # (3F, 2) edge k of face i at k*F + i
    key = np.sort(e, axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    mid = V + inv.reshape(3, -1).T  # (F, 3) new vertex on edges 01, 12, 20
    a, b, c = f.T
    m01, m12, m20 = mid.T
    faces = np.concatenate([
        np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
        np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1)])
    out = rig.copy()
    v = rig.vertices.astype(np.float64)
    out.vertices = np.concatenate([v, 0.5 * (v[uniq[:, 0]] + v[uniq[:, 1]])]).astype(np.float32)
    out.faces = faces.astype(np.int32)
    if rig.weights is not None:
        w = rig.weights.astype(np.float64)
        out.weights = np.concatenate([w, 0.5 * (w[uniq[:, 0]] + w[uniq[:, 1]])]).astype(np.float32)
    if rig.mesh_part is not None:
        out.mesh_part = np.concatenate([rig.mesh_part, rig.mesh_part[uniq[:, 0]]])
    return out


def remesh_rig(rig: Rig, rng: np.random.Generator, max_vertices: int = 12000) -> Rig:
    """A random tessellation change that keeps the shape: midpoint subdivision (when the result
    stays under ``max_vertices``) or vertex-clustering decimation to 30-70 % of the vertices."""
    from backend.features.simplify import simplify_rig

    V = rig.num_vertices
    grow_ok = V + 1.5 * len(rig.faces) <= max_vertices  # about one new vertex per 2/3 face
    if grow_ok and (rng.random() < 0.5 or V < 400):
        return subdivide_rig(rig)
    if V < 400:
        return rig
    small, _ = simplify_rig(rig, int(V * rng.uniform(0.3, 0.7)))
    return small


def augment_rig(rig: Rig, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> Rig:
    """One random augmented copy of a weighted rig (the input is not modified)."""
    if rig.weights is None:
        raise RigError(f"{rig.name}: augmentation needs the rig's true weights")
    scale = canonical_frame(rig).scale
    out = rig.copy()
    if config.remesh > 0 and rng.random() < config.remesh:
        out = remesh_rig(out, rng, config.remesh_max_vertices)
    J, V = out.num_bones, out.num_vertices
    if config.thickness > 0:
        f = rng.uniform(1 - config.thickness, 1 + config.thickness, J)
        out.vertices = _thicken(out, f).astype(np.float32)
    if config.rotation_deg > 0:
        axes = rng.normal(size=(J, 3))
        angles = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg, J))
        rots = np.stack([axis_angle_matrix(ax, an) for ax, an in zip(axes, angles)])
        out = pose_rig(out, rots)
    if config.axis_scale > 0:
        origin = out.joints[np.flatnonzero(out.parents < 0)[0]].astype(np.float64)
        s = rng.uniform(1 - config.axis_scale, 1 + config.axis_scale, 3)
        for name in ("vertices", "joints", "tails"):
            setattr(out, name, ((getattr(out, name) - origin) * s + origin).astype(np.float32))
    if config.translation_sigma > 0:
        t = rng.normal(0.0, config.translation_sigma * scale, 3)
        for name in ("vertices", "joints", "tails"):
            setattr(out, name, (getattr(out, name) + t).astype(np.float32))
    if config.noise_sigma > 0:
        out.vertices = (out.vertices + rng.normal(0.0, config.noise_sigma * scale, (V, 3))).astype(np.float32)
    if config.detach > 0 and (config.detach_copies >= 1 or rng.random() < config.detach_copies):
        # last, so that the steps above draw the same numbers with or without it
        parents = out.parents.copy()
        cut = (parents >= 0) & (rng.random(J) < config.detach)
        parents[cut] = -1
        out.parents = parents
    if config.label_smoothing > 0:
        w = out.weights
        empty = w.sum(axis=1) <= 1e-8
        sm = smooth_weights(w, out.faces, 1, alpha=config.label_smoothing)
        sm[empty] = 0.0
        out.weights = sm
    return out
