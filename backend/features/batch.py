"""Concatenate the features of several rigs into one disjoint batch (numpy, no torch)."""
from __future__ import annotations

import numpy as np

from backend.features.pipeline import RigFeatures


def collate(features: list[RigFeatures]) -> dict[str, np.ndarray]:
    """Disjoint union of rigs: neighbour and candidate indices are offset.

    Returns the generator inputs plus ``vertex_graph`` (V_total,) int64 (rig id per vertex) and
    ``bone_graph`` (Jd_total,) int64. All rigs must share K (the candidate count).
    """
    ks = {f.cand.shape[1] for f in features}
    if len(ks) != 1:
        raise ValueError(f"rigs in one batch need the same number of candidate bones, got {sorted(ks)}")
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
    }
