"""Learning features of a rig, shared by training and inference (numpy + scipy only).

See docs/architecture.md for the contract. Everything is computed in the canonical frame
(root joint at the origin, the character inside the unit sphere), so the features do not
depend on the file's units or placement.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from backend.features.frame import CanonicalFrame, canonical_frame
from backend.features.geometry import knn, mesh_edges, point_segment_distance, vertex_normals
from backend.rig import Rig

#: Bump when any feature changes meaning; models record it and the runtime refuses a mismatch.
FEATURE_VERSION = "autoskin-features-1"
FV = 10  # vertex features
FB = 14  # bone features
FP = 10  # (vertex, candidate bone) pair features
EPS = 1e-6
#: Columns that hold absolute canonical positions (vertex xyz; bone head and tail xyz). A generator
#: built with ``relative_inputs`` ignores them and sees only pose- and layout-free quantities.
VERTEX_POSITION_COLUMNS = (0, 1, 2)
BONE_POSITION_COLUMNS = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class FeatureConfig:
    """Feature parameters; part of the model's metadata."""

    k_bones: int = 8
    n_neighbors: int = 12
    geodesic_resolution: int = 64
    distance: str = "geodesic"  # or "euclidean": straight-line bone distance (ablation / fallback)
    prior: str = "geodesic"  # the prior weights fed to G: "geodesic" falloff or "heat" diffusion (features/heat.py)
    #: add features.pieces.FPIECE columns about each vertex's separate mesh piece to pair_feat
    piece_features: bool = field(default=False, metadata={"key_omits_default": True})
    #: the parent of each vertex's nearest bone is always a candidate (it takes the farthest slot when
    #: missing): a part often belongs to the bone that carries it, e.g. a tank hull to the root
    parent_candidate: bool = field(default=False, metadata={"key_omits_default": True})
    #: add the geodesic falloff weight of each candidate (features.geodesic.geodesic_weights) as one
    #: more pair column, so a generator fed the heat prior also sees the other prior and can learn
    #: which one to trust (they disagree most on characters built from separate boxes)
    geodesic_pair: bool = field(default=False, metadata={"key_omits_default": True})

    def key_fields(self) -> dict:
        """The fields that identify the features (backend.features.cache.key_fields: options added
        later are left out while they hold their default, so caches and keys made before them stay valid)."""
        from backend.features.cache import key_fields

        return key_fields(self)

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.key_fields().items()))

    @property
    def pair_dim(self) -> int:
        """Columns of pair_feat: FP, plus FPIECE with ``piece_features``, plus 1 with ``geodesic_pair``."""
        from backend.features.pieces import FPIECE

        return FP + (FPIECE if self.piece_features else 0) + (1 if self.geodesic_pair else 0)


@dataclass
class RigFeatures:
    """Inputs of the generator for one rig (shapes in docs/architecture.md)."""

    vertex_feat: np.ndarray  # (V, FV) float32
    neighbors: np.ndarray  # (V, N) int64
    bone_feat: np.ndarray  # (Jd, FB) float32
    cand: np.ndarray  # (V, K) int64 into deform bones
    pair_feat: np.ndarray  # (V, K, FeatureConfig.pair_dim) float32
    prior: np.ndarray  # (V, K) float32
    deform_index: np.ndarray  # (Jd,) int64 into rig bones
    num_bones: int  # J of the rig
    frame: CanonicalFrame
    extra_mask: np.ndarray | None = None  # (V, K) bool, False for padded candidates (see features.batch)

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The arrays fed to the generator (ONNX input names)."""
        return {
            "vertex_feat": self.vertex_feat,
            "neighbors": self.neighbors,
            "bone_feat": self.bone_feat,
            "cand": self.cand,
            "pair_feat": self.pair_feat,
            "prior": self.prior,
        }

    def to_dense(self, w_vk: np.ndarray) -> np.ndarray:
        """(V, K) weights over the candidates -> (V, J) float32 over all rig bones."""
        V = w_vk.shape[0]
        out = np.zeros((V, self.num_bones), np.float32)
        cols = self.deform_index[self.cand]  # (V, K)
        np.add.at(out, (np.repeat(np.arange(V), cols.shape[1]), cols.ravel()), w_vk.ravel().astype(np.float32))
        return out

    def gather_dense(self, w_vj: np.ndarray) -> np.ndarray:
        """(V, J) weights over all rig bones -> (V, K) float32 over the candidates (mass elsewhere dropped)."""
        cols = self.deform_index[self.cand]
        return np.take_along_axis(np.asarray(w_vj, np.float32), cols, axis=1)


def neighbor_table(vertices: np.ndarray, faces: np.ndarray, n: int) -> np.ndarray:
    """(V, n) int64 fixed-size neighbourhoods: mesh 1-ring first (up to n), the remaining slots
    filled with the nearest other vertices in space, so separate parts are connected."""
    V = vertices.shape[0]
    edges = mesh_edges(faces)
    both = np.concatenate([edges, edges[:, ::-1]])
    order = np.lexsort((both[:, 1], both[:, 0]))
    both = both[order]
    counts = np.bincount(both[:, 0], minlength=V)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(both)) - starts[both[:, 0]]
    keep = slot < n
    ring = np.full((V, n), -1, np.int64)
    ring[both[keep, 0], slot[keep]] = both[keep, 1]
    ring_count = np.minimum(counts, n)
    _, near = knn(vertices, n)  # (V, n)
    pos = np.arange(n)[None, :]
    fill_idx = np.clip(pos - ring_count[:, None], 0, n - 1)
    filled = np.take_along_axis(near, fill_idx, axis=1)
    return np.where(pos < ring_count[:, None], ring, filled).astype(np.int64)


def bone_frames(heads: np.ndarray, tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bone an orthonormal frame with +Y along the bone (Blender's convention) and the
    shortest-arc quaternion (w, x, y, z) from +Y to the bone direction.

    Returns ((J, 3, 3) float32 rotation whose columns are the bone's x, y, z axes, (J, 4) float32 quaternion).
    """
    d = tails.astype(np.float64) - heads.astype(np.float64)
    length = np.linalg.norm(d, axis=1, keepdims=True)
    y = np.where(length > EPS, d / np.maximum(length, EPS), np.array([0.0, 1.0, 0.0]))
    up = np.array([0.0, 1.0, 0.0])
    # quaternion from +Y to y: q = normalise(1 + up.y, up x y); the antiparallel case rotates about +X
    w = 1.0 + y @ up
    xyz = np.cross(np.broadcast_to(up, y.shape), y)
    q = np.concatenate([w[:, None], xyz], axis=1)
    anti = w < 1e-6
    q[anti] = np.array([0.0, 1.0, 0.0, 0.0])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    qw, qx, qy, qz = q.T
    rot = np.stack([
        np.stack([1 - 2 * (qy**2 + qz**2), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)], axis=1),
        np.stack([2 * (qx * qy + qz * qw), 1 - 2 * (qx**2 + qz**2), 2 * (qy * qz - qx * qw)], axis=1),
        np.stack([2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx**2 + qy**2)], axis=1),
    ], axis=1)
    return rot.astype(np.float32), q.astype(np.float32)


def bone_features(heads: np.ndarray, tails: np.ndarray, parents_d: np.ndarray) -> np.ndarray:
    """(Jd, FB) float32: head (3), tail (3), orientation quaternion (4), length, relative depth,
    leaf flag, child count / 4 -- deform bones, canonical frame; parents_d index deform bones (-1 root)."""
    Jd = heads.shape[0]
    _, quat = bone_frames(heads, tails)
    length = np.linalg.norm(tails - heads, axis=1)
    depth = np.zeros(Jd, np.float64)
    for j in range(Jd):
        k, dep = j, 0
        while parents_d[k] >= 0 and dep <= Jd:
            k, dep = parents_d[k], dep + 1
        depth[j] = dep
    children = np.bincount(parents_d[parents_d >= 0], minlength=Jd)
    feat = np.concatenate([
        heads, tails, quat, length[:, None],
        (depth / max(depth.max(), 1.0))[:, None],
        (children == 0).astype(np.float64)[:, None],
        np.minimum(children, 8)[:, None] / 4.0,
    ], axis=1)
    assert feat.shape[1] == FB
    return feat.astype(np.float32)


def deform_parents(parents: np.ndarray, deform_index: np.ndarray) -> np.ndarray:
    """(Jd,) int64 parent of each deform bone among the deform bones (nearest deform ancestor, -1 if none)."""
    pos = np.full(parents.shape[0], -1, np.int64)
    pos[deform_index] = np.arange(len(deform_index))
    out = np.full(len(deform_index), -1, np.int64)
    for i, j in enumerate(deform_index):
        p, steps = int(parents[j]), 0
        while p >= 0 and pos[p] < 0 and steps <= len(parents):
            p, steps = int(parents[p]), steps + 1
        out[i] = pos[p] if p >= 0 else -1
    return out


def candidate_distances(verts: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                        edist: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The K candidate bones of each vertex, nearest first: ((V, K) int64, (V, K) float32 distance)."""
    if config.distance == "geodesic":
        from backend.features.geodesic import geodesic_bone_distances

        return geodesic_bone_distances(verts, faces, heads, tails, config.k_bones, config.geodesic_resolution)
    if config.distance != "euclidean":
        raise ValueError(f"unknown feature distance {config.distance!r} (geodesic or euclidean)")
    K = min(config.k_bones, edist.shape[1])
    cand = np.argsort(edist, axis=1, kind="stable")[:, :K]
    return cand.astype(np.int64), np.take_along_axis(edist, cand, axis=1).astype(np.float32)


def with_parent_candidate(cand: np.ndarray, dist: np.ndarray, parents_d: np.ndarray, edist: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Candidates with the parent of each vertex's nearest bone among them.

    cand / dist (V, K) nearest first, parents_d (Jd,) deform parents (-1 root), edist (V, Jd)
    straight-line bone distances. Where the parent is missing it replaces the last (farthest)
    candidate, at distance max(straight-line distance, the replaced one's): the parent was not
    among the K nearest, so it is at least that far, and the rows stay sorted. Returns new arrays.
    """
    cand, dist = cand.copy(), dist.copy()
    if cand.shape[1] < 2:
        return cand, dist
    parent = parents_d[cand[:, 0]]
    rows = np.flatnonzero((parent >= 0) & ~(cand == parent[:, None]).any(axis=1))
    p = parent[rows]
    cand[rows, -1] = p
    dist[rows, -1] = np.maximum(edist[rows, p], dist[rows, -1])
    return cand, dist


def prior_weights(verts: np.ndarray, faces: np.ndarray, heads: np.ndarray, tails: np.ndarray, cand: np.ndarray,
                  dist: np.ndarray, config: FeatureConfig,
                  nearest: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(V, K) float32 prior weights over the candidates, rows sum to 1, every entry > 0 (an exact
    0 marks padding, see features.batch): the geodesic falloff or the heat-diffusion solution.
    nearest: the plain K-nearest geodesic (cand, dist) when the candidates were changed after the
    search (``parent_candidate``); the heat solve reuses it."""
    from backend.features.geodesic import geodesic_weights

    if config.prior == "geodesic":
        prior = geodesic_weights(dist).astype(np.float64)
    elif config.prior == "heat":
        from backend.features.heat import heat_weights

        geodesic = (nearest or (cand, dist)) if config.distance == "geodesic" else None  # reuse: one solve less
        heat = heat_weights(verts, faces, heads, tails, prune=0.0, resolution=config.geodesic_resolution,
                            geodesic=geodesic)  # (V, Jd)
        prior = np.take_along_axis(heat.astype(np.float64), cand, axis=1)
    else:
        raise ValueError(f"unknown prior {config.prior!r} (geodesic or heat)")
    prior = np.maximum(prior, 1e-6)
    return (prior / prior.sum(axis=1, keepdims=True)).astype(np.float32)


def compute_features(rig: Rig, config: FeatureConfig = FeatureConfig()) -> RigFeatures:
    """All generator inputs for ``rig`` (weights ignored)."""
    frame = canonical_frame(rig)
    verts = frame.to_canonical(rig.vertices)
    deform_index = rig.deform_indices
    heads = frame.to_canonical(rig.joints[deform_index])
    tails = frame.to_canonical(rig.tails[deform_index])
    V = verts.shape[0]

    normals = vertex_normals(verts, rig.faces)
    neighbors = neighbor_table(verts, rig.faces, config.n_neighbors)
    offs = verts[neighbors] - verts[:, None, :]  # (V, N, 3)
    spread = np.linalg.norm(offs, axis=2).mean(axis=1)  # (V,)
    mean_off = offs.mean(axis=1) / np.maximum(spread, EPS)[:, None]

    all_edist, _ = point_segment_distance(verts, heads, tails)  # (V, Jd)
    parents_d = deform_parents(rig.parents, deform_index)
    nearest = candidate_distances(verts, rig.faces, heads, tails, all_edist, config)
    cand, gdist = nearest
    if config.parent_candidate:
        cand, gdist = with_parent_candidate(cand, gdist, parents_d, all_edist)
    prior = prior_weights(verts, rig.faces, heads, tails, cand, gdist, config, nearest)
    K = cand.shape[1]

    # Euclidean segment distance and position along the bone for the candidates only.
    h, t = heads[cand], tails[cand]  # (V, K, 3)
    ab = t - h
    ap = verts[:, None, :] - h
    denom = np.maximum((ab * ab).sum(-1), EPS**2)
    tpos = np.clip((ap * ab).sum(-1) / denom, 0.0, 1.0)
    edist = np.linalg.norm(ap - tpos[..., None] * ab, axis=-1)
    rot, _ = bone_frames(heads, tails)
    local = np.einsum("vkji,vkj->vki", rot[cand], ap)  # (p - head) in the bone's frame
    min_e = all_edist.min(axis=1)
    min_g = gdist[:, :1]
    pair = np.concatenate([
        edist[..., None],
        tpos[..., None],
        local,
        gdist[..., None],
        np.log((gdist + 1e-3) / (min_g + 1e-3))[..., None],
        np.log((edist + 1e-3) / (min_e[:, None] + 1e-3))[..., None],
        prior[..., None],
        np.broadcast_to((np.arange(K) / max(K - 1, 1))[None, :, None], (V, K, 1)),
    ], axis=2).astype(np.float32)
    assert pair.shape[2] == FP
    if config.piece_features:
        from backend.features.pieces import piece_pair_features

        pair = np.concatenate([pair, piece_pair_features(verts, rig.faces, heads, tails, cand, prior)], axis=2)
    if config.geodesic_pair:
        from backend.features.geodesic import geodesic_weights

        pair = np.concatenate([pair, geodesic_weights(gdist)[..., None]], axis=2).astype(np.float32)

    vfeat = np.concatenate([verts, normals, mean_off, min_e[:, None]], axis=1).astype(np.float32)
    assert vfeat.shape[1] == FV
    bfeat = bone_features(heads, tails, parents_d)
    return RigFeatures(
        vertex_feat=vfeat,
        neighbors=neighbors,
        bone_feat=bfeat,
        cand=cand.astype(np.int64),
        pair_feat=pair,
        prior=prior,
        deform_index=deform_index,
        num_bones=rig.num_bones,
        frame=frame,
    )


def feature_code_hash() -> str:
    """Hash of the feature version and dimensions; stored in models and checked at run time."""
    text = f"{FEATURE_VERSION}|FV={FV}|FB={FB}|FP={FP}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
