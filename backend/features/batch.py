"""Concatenate the features of several rigs into one disjoint batch (numpy, no torch)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from backend.features.pipeline import RigFeatures


def collate(features: list[RigFeatures]) -> dict[str, np.ndarray]:
    """Disjoint union of rigs: neighbour and candidate indices are offset.

    Returns the generator inputs plus ``vertex_graph`` (V_total,) int64 (rig id per vertex) and
    ``bone_graph`` (Jd_total,) int64 and ``pair_mask`` (V_total, K) bool. Rigs with fewer
    candidates than the largest K are padded with their own nearest candidate at prior 0
    (mask False), which the generator weights ~1e-6 of a real candidate.
    """
    K = max(f.cand.shape[1] for f in features)
    features = [pad_candidates(f, K) for f in features]
    v_off = np.cumsum([0] + [f.vertex_feat.shape[0] for f in features])
    b_off = np.cumsum([0] + [f.bone_feat.shape[0] for f in features])
    return {
        "vertex_feat": np.concatenate([f.vertex_feat for f in features]),
        "neighbors": np.concatenate([f.neighbors + v_off[i] for i, f in enumerate(features)]),
        "bone_feat": np.concatenate([f.bone_feat for f in features]),
        "cand": np.concatenate([f.cand + b_off[i] for i, f in enumerate(features)]),
        "pair_feat": np.concatenate([f.pair_feat for f in features]),
        "prior": np.concatenate([f.prior for f in features]),
        "vertex_graph": np.concatenate([np.full(f.vertex_feat.shape[0], i, np.int64) for i, f in enumerate(features)]),
        "bone_graph": np.concatenate([np.full(f.bone_feat.shape[0], i, np.int64) for i, f in enumerate(features)]),
        "pair_mask": np.concatenate([np.ones(f.prior.shape, bool) if f.extra_mask is None else f.extra_mask
                                    for f in features]),
    }


def pad_candidates(f: RigFeatures, K: int) -> RigFeatures:
    """Return ``f`` with exactly K candidates per vertex (padding: nearest candidate, prior 0, masked)."""
    k = f.cand.shape[1]
    if k == K:
        return f
    pad = K - k
    mask = np.concatenate([np.ones_like(f.prior, bool), np.zeros((f.prior.shape[0], pad), bool)], axis=1)
    return replace(
        f,
        cand=np.concatenate([f.cand, np.repeat(f.cand[:, :1], pad, axis=1)], axis=1),
        pair_feat=np.concatenate([f.pair_feat, np.repeat(f.pair_feat[:, :1], pad, axis=1)], axis=1),
        prior=np.concatenate([f.prior, np.zeros((f.prior.shape[0], pad), np.float32)], axis=1),
        extra_mask=mask,
    )
