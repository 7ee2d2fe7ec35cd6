"""Training data: rig files -> cached features + candidate targets -> deterministic batches.

* :class:`FeatureStore` computes ``compute_features`` once per (file content, feature config,
  augmentation variant) and keeps it on disk (``backend.features.cache.cached``) and in memory.
* Targets are the true weights gathered at each vertex's candidates and renormalised over them
  (``row_valid`` False where the candidates carry no true weight).
* Batch order depends only on (seed, epoch): :func:`epoch_batches` packs rigs up to a vertex
  budget and deals the batches to DDP ranks, so a resumed run sees the same batches.
* Rigs above ``max_vertices`` are cropped to a random connected patch (seeded by seed, epoch, rig).
* With ``deform_poses`` > 0 a labelled sample also carries each candidate bone's displacement of
  its vertices in that many random poses (``backend.training.poses``), for the deformation loss.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from backend.features.batch import collate
from backend.features.cache import cached
from backend.features.pipeline import FEATURE_VERSION, FeatureConfig, RigFeatures, compute_features, feature_code_hash
from backend.inference.blend_rule import PieceBlendRule
from backend.io.npz import list_rig_files, load_npz
from backend.rig import Rig, RigError
from backend.training.poses import candidate_displacements

ARRAYS = ("vertex_feat", "neighbors", "bone_feat", "cand", "pair_feat", "prior", "deform_index")


@dataclass
class Sample:
    """One rig's generator inputs (see docs/architecture.md) plus its targets.

    target (V, K) float32 true weights at the candidates, rows renormalised (zeros if unlabelled);
    row_valid (V,) bool; labeled: whether target is usable; coverage: mean true mass on the candidates.
    """

    name: str
    vertex_feat: np.ndarray
    neighbors: np.ndarray
    bone_feat: np.ndarray
    cand: np.ndarray
    pair_feat: np.ndarray
    prior: np.ndarray
    deform_index: np.ndarray
    num_bones: int
    target: np.ndarray
    row_valid: np.ndarray
    labeled: bool
    coverage: float = 1.0
    displacement: np.ndarray | None = None  # (P, V, K, 3) float32, see training.poses
    blend: float = 1.0  # the generator's share of the runtime weights for this rig (the rest is its prior)
    weight: float = 1.0  # the rig's weight in the supervised losses (training.folds.domain_weights)

    @property
    def num_vertices(self) -> int:
        return int(self.vertex_feat.shape[0])

    def features(self) -> RigFeatures:
        return RigFeatures(vertex_feat=self.vertex_feat, neighbors=self.neighbors, bone_feat=self.bone_feat,
                           cand=self.cand, pair_feat=self.pair_feat, prior=self.prior,
                           deform_index=self.deform_index, num_bones=self.num_bones, frame=None)


def list_rigs(folder: str | Path) -> list[Path]:
    """Sorted ``*.npz`` files of a folder; RigError if the folder is missing or empty."""
    return list_rig_files(folder, what="data folder")


def candidate_targets(weights: np.ndarray, cand: np.ndarray, deform_index: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V, J) true weights -> ((V, K) float32 renormalised over the candidates, (V,) bool valid,
    (V,) float32 mass the candidates capture)."""
    t = np.take_along_axis(np.asarray(weights, np.float32), deform_index[cand], axis=1)
    mass = t.sum(1)
    valid = mass > 1e-4
    t = np.where(valid[:, None], t / np.maximum(mass, 1e-4)[:, None], 0.0).astype(np.float32)
    return t, valid, mass.astype(np.float32)


class FeatureStore:
    """Disk + memory cache of per-rig features and targets.

    ``augment_variants`` > 0 enables variants 1..n: the rig passed through
    ``backend.features.augment.augment_rig`` with a generator seeded from (file hash, variant).
    """

    def __init__(self, cache_dir: str | Path, feature_config: FeatureConfig, augment_config=None,
                 skip_helpers: bool = False):
        from backend.features.augment import AugmentConfig

        self.cache_dir = Path(cache_dir)
        self.feature_config = feature_config
        self.augment_config = augment_config or AugmentConfig()
        self.skip_helpers = bool(skip_helpers)  # helper bones are no candidates, as in the runtime
        self.memory: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self.geometries: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self._digests: dict[str, str] = {}

    def digest(self, path: Path) -> str:
        key = str(path)
        if key not in self._digests:
            self._digests[key] = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
        return self._digests[key]

    def key_parts(self, path: Path, variant: int) -> dict:
        key = {"kind": "training-sample", "file": self.digest(path), "features": self.feature_config,
               "feature_version": FEATURE_VERSION, "feature_code": feature_code_hash(), "variant": variant}
        if variant > 0 and (self.augment_config.remesh > 0 or self.augment_config.detach > 0):
            key["augment"] = self.augment_config  # older caches stay valid without remeshing or detaching
        if self.skip_helpers:  # older caches stay valid without it
            key["skip_helpers"] = True
        return key

    def arrays(self, path: str | Path, variant: int = 0) -> dict[str, np.ndarray]:
        """Features + targets of one file (computed once, then read from the cache)."""
        path = Path(path)
        mkey = (str(path), variant)
        if mkey not in self.memory:
            self.memory[mkey] = cached(self.cache_dir, self.key_parts(path, variant),
                                       lambda: self._compute(path, variant))
        return self.memory[mkey]

    def rig(self, path: Path, variant: int) -> Rig:
        """The rig whose features ``arrays(path, variant)`` holds: helpers cleared, then augmented."""
        rig = load_npz(path)
        if self.skip_helpers:
            from backend.features.helper_bones import without_helpers

            rig, _ = without_helpers(rig)
        if variant > 0 and rig.weights is not None:  # augmentation is driven by the true weights
            from backend.features.augment import augment_rig

            rng = np.random.default_rng([int(self.digest(path), 16) % (2**32), variant])
            rig = augment_rig(rig, rng, self.augment_config)
        return rig

    def geometry(self, path: str | Path, variant: int = 0) -> dict[str, np.ndarray]:
        """Rest geometry of that rig: vertices (V, 3), joints (J, 3), parents (J,), diagonal ()
        (cached on disk like the features; it does not depend on the feature config)."""
        from backend.evaluation.deformation import bbox_diagonal

        path = Path(path)
        mkey = (str(path), variant)
        if mkey not in self.geometries:
            # keyed like the features (file, variant, augmentation, helper skipping, feature code, which
            # holds the augmentation and helper-bone code) but not by the feature config
            key = {**self.key_parts(path, variant), "kind": "training-geometry", "features": None}

            def compute() -> dict[str, np.ndarray]:
                rig = self.rig(path, variant)
                return {"vertices": rig.vertices.astype(np.float32), "joints": rig.joints.astype(np.float32),
                        "parents": rig.parents.astype(np.int64), "diagonal": np.float64(bbox_diagonal(rig.vertices))}

            self.geometries[mkey] = cached(self.cache_dir, key, compute)
        return self.geometries[mkey]

    def _compute(self, path: Path, variant: int) -> dict[str, np.ndarray]:
        rig = self.rig(path, variant)
        f = compute_features(rig, self.feature_config)
        out = {k: getattr(f, k) for k in ARRAYS}
        out["num_bones"] = np.int64(rig.num_bones)
        if rig.weights is not None:
            t, valid, mass = candidate_targets(rig.weights, f.cand, f.deform_index)
            out.update(target=t, row_valid=valid, mass=mass)
        return out

    def sample(self, path: str | Path, variant: int = 0, labeled: bool = True) -> Sample:
        """A :class:`Sample`; ``labeled=False`` (or a file without weights) gives zero targets."""
        a = self.arrays(path, variant)
        has = labeled and "target" in a
        V, K = a["cand"].shape
        return Sample(
            name=Path(path).name,
            **{k: a[k] for k in ARRAYS},
            num_bones=int(a["num_bones"]),
            target=a["target"] if has else np.zeros((V, K), np.float32),
            row_valid=a["row_valid"] if has else np.zeros(V, bool),
            labeled=has,
            coverage=float(a["mass"].mean()) if has else 0.0,
        )


def connected_crop(neighbors: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,) sorted int64 vertex ids of a patch grown breadth-first over the neighbour table
    from a random vertex (restarting at another random vertex if a component runs out)."""
    V = neighbors.shape[0]
    if size >= V:
        return np.arange(V, dtype=np.int64)
    taken = np.zeros(V, bool)
    count = 0
    frontier = np.empty(0, np.int64)
    while count < size:
        if len(frontier) == 0:
            free = np.flatnonzero(~taken)
            frontier = free[rng.integers(len(free))][None]
        frontier = frontier[:size - count]
        taken[frontier] = True
        count += len(frontier)
        nxt = np.unique(neighbors[frontier].ravel())
        frontier = nxt[~taken[nxt]]
    return np.flatnonzero(taken).astype(np.int64)


def crop_sample(s: Sample, keep: np.ndarray) -> Sample:
    """The sub-rig of vertices ``keep``; neighbours outside it are replaced by the vertex itself."""
    remap = np.full(s.num_vertices, -1, np.int64)
    remap[keep] = np.arange(len(keep))
    nb = remap[s.neighbors[keep]]
    nb = np.where(nb < 0, np.arange(len(keep))[:, None], nb)
    return replace(s, vertex_feat=s.vertex_feat[keep], neighbors=nb, cand=s.cand[keep],
                   pair_feat=s.pair_feat[keep], prior=s.prior[keep], target=s.target[keep],
                   row_valid=s.row_valid[keep],
                   displacement=None if s.displacement is None else s.displacement[:, keep])


def epoch_batches(sizes: list[int], budget: int, seed: int, epoch: int, stream: int = 0,
                  rank: int = 0, world: int = 1) -> list[list[int]]:
    """This rank's batches (lists of rig indices) for ``epoch``: a permutation seeded by
    (seed, epoch, stream), packed greedily up to ``budget`` vertices (a rig larger than the budget
    goes alone); the batch list is padded by wrapping to a multiple of ``world`` and dealt round-robin,
    so every rank gets the same number of batches."""
    if not sizes:
        return []
    order = np.random.default_rng([seed, epoch, stream]).permutation(len(sizes))
    batches: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i in order:
        n = sizes[i]
        if cur and total + n > budget:
            batches.append(cur)
            cur, total = [], 0
        cur.append(int(i))
        total += n
    if cur:
        batches.append(cur)
    while len(batches) % world:
        batches.append(batches[len(batches) % max(len(batches), 1)])
    return batches[rank::world]


@dataclass
class Batch:
    """A collated batch as torch tensors (keys of features.batch.collate + target, row_valid)."""

    tensors: dict[str, torch.Tensor]
    num_graphs: int
    names: list[str]

    def to(self, device: torch.device) -> "Batch":
        return Batch({k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}, self.num_graphs, self.names)

    def inputs(self) -> tuple[torch.Tensor, ...]:
        t = self.tensors
        return t["vertex_feat"], t["neighbors"], t["bone_feat"], t["cand"], t["pair_feat"], t["prior"]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]


def collate_samples(samples: list[Sample]) -> Batch:
    """Disjoint union of samples (features.batch.collate) with the targets padded to the batch's K."""
    arrays = collate([s.features() for s in samples])
    K = arrays["cand"].shape[1]
    targets = [np.pad(s.target, ((0, 0), (0, K - s.target.shape[1]))) for s in samples]
    arrays["target"] = np.concatenate(targets).astype(np.float32)
    arrays["row_valid"] = np.concatenate([s.row_valid for s in samples])
    if any(s.displacement is not None for s in samples):
        poses = {s.displacement.shape[0] for s in samples if s.displacement is not None}
        if len(poses) != 1:
            raise ValueError(f"samples posed a different number of times: {sorted(poses)}")
        P = poses.pop()
        disp = [np.zeros((P, s.num_vertices, K, 3), np.float32) if s.displacement is None else
                np.pad(s.displacement, ((0, 0), (0, 0), (0, K - s.displacement.shape[2]), (0, 0))) for s in samples]
        arrays["displacement"] = np.concatenate(disp, axis=1)
        if any(s.blend != 1.0 for s in samples):  # (V,) the runtime's prior blend of each row's rig
            arrays["blend"] = np.concatenate([np.full(s.num_vertices, s.blend, np.float32) for s in samples])
    if any(s.weight != 1.0 for s in samples):  # (V,) the loss weight of each row's rig
        arrays["rig_weight"] = np.concatenate([np.full(s.num_vertices, s.weight, np.float32) for s in samples])
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return Batch(tensors, len(samples), [s.name for s in samples])


class RigSet:
    """A list of rig files with a labelled flag each, materialised per epoch into batches."""

    def __init__(self, paths: list[Path], labeled: list[bool], store: FeatureStore, max_vertices: int,
                 augment_variants: int = 0, deform_poses: int = 0, blend_rule: PieceBlendRule | None = None,
                 memo: bool = False, weights: list[float] | None = None):
        if weights is not None and len(weights) != len(paths):
            raise ValueError(f"{len(weights)} rig weights for {len(paths)} rigs")
        self.weights = list(weights) if weights is not None else None  # per-rig loss weights (None: all 1)
        self.deform_poses = int(deform_poses)  # > 0: labelled samples carry candidate displacements
        # keep every sample built (validation: the same rigs, seed and epoch every time, so the posed
        # displacements are computed once instead of once per epoch)
        self.memo: dict[tuple[int, int, int], Sample] | None = {} if memo else None
        self.blend_rule = blend_rule  # posed samples carry the runtime's prior blend for their rig
        self._shares: dict[str, float] = {}
        self.paths = list(paths)
        self.labeled = list(labeled)
        self.store = store
        self.max_vertices = max_vertices
        self.augment_variants = augment_variants

    def __len__(self) -> int:
        return len(self.paths)

    def prepare(self, rank: int = 0, world: int = 1, progress: bool = False) -> None:
        """Compute (or load) this rank's share of the features: file i goes to rank i % world."""
        idx = list(range(rank, len(self.paths), world))
        it = idx
        if progress:
            from tqdm import tqdm

            it = tqdm(idx, desc="features", unit="rig")
        for i in it:
            for v in range(self.augment_variants + 1):
                self.store.arrays(self.paths[i], v)
                if self.deform_poses and self.labeled[i]:
                    self.store.geometry(self.paths[i], v)

    def piece_share(self, i: int) -> float:
        """Share of rig i's surface in small separate pieces (of the painted file, as the runtime sees it)."""
        key = str(self.paths[i])
        if key not in self._shares:
            rig = load_npz(self.paths[i])
            self._shares[key] = self.blend_rule.share(rig) if self.blend_rule is not None else 0.0
        return self._shares[key]

    def sizes(self) -> list[int]:
        return [min(int(self.store.arrays(p)["vertex_feat"].shape[0]), self.max_vertices) for p in self.paths]

    def get(self, i: int, seed: int, epoch: int) -> Sample:
        """Rig i as seen in ``epoch`` (its augmentation variant and crop depend on seed, epoch, i)."""
        if self.memo is not None:
            key = (i, seed, epoch)
            if key not in self.memo:
                self.memo[key] = self._build(i, seed, epoch)
            return self.memo[key]
        return self._build(i, seed, epoch)

    def _build(self, i: int, seed: int, epoch: int) -> Sample:
        rng = np.random.default_rng([seed, epoch, i, 7])
        variant = int(rng.integers(self.augment_variants + 1)) if self.augment_variants else 0
        s = self.store.sample(self.paths[i], variant, self.labeled[i])
        keep = None
        if s.num_vertices > self.max_vertices:
            keep = connected_crop(s.neighbors, self.max_vertices, rng)
            s = crop_sample(s, keep)
        if self.deform_poses and s.labeled:
            g = self.store.geometry(self.paths[i], variant)
            x = g["vertices"] if keep is None else g["vertices"][keep]
            if len(x) != s.num_vertices:
                raise RigError(f"{self.paths[i]}: cached geometry has {len(x)} vertices, the features {s.num_vertices}")
            s = replace(s, displacement=candidate_displacements(
                x, g["joints"], g["parents"], s.deform_index, s.cand, float(g["diagonal"]), self.deform_poses,
                seed=int(rng.integers(2**31))))
            if self.blend_rule is not None:
                s = replace(s, blend=self.blend_rule.blend_for_share(self.piece_share(i)))
        if self.weights is not None:
            s = replace(s, weight=float(self.weights[i]))
        return s

    def batch(self, indices: list[int], seed: int, epoch: int) -> Batch:
        return collate_samples([self.get(i, seed, epoch) for i in indices])


def split_labeled(n: int, fraction: float, seed: int) -> list[bool]:
    """Which of n train rigs keep their weights: round(fraction * n) of them, chosen by seed
    (at least one when fraction > 0)."""
    if not 0.0 <= fraction <= 1.0:
        raise RigError(f"labeled fraction must be within 0..1, got {fraction}")
    k = int(round(fraction * n))
    if fraction > 0:
        k = max(k, 1)
    keep = np.zeros(n, bool)
    keep[np.random.default_rng([seed, 11]).permutation(n)[:k]] = True
    return keep.tolist()
