"""Score one fold's held-out rigs with the fold model and the "bone inside the piece" rule (one JSON line per rig).

    python experiments/enclosing_pieces/score_boxes.py --fold N --cv runs/cv/recipe --out DIR

Per rig: the fold model with the shipped run-time settings (cv_rt-s3d05.onnx), then variants where each
separate piece under a share of the surface whose convex hull (or bounding box) holds the midpoint of
exactly one deform bone is given to that bone alone; each scored by ``evaluate_weights``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import Delaunay, QhullError

from backend.evaluation.runner import evaluate_weights
from backend.features.pieces import piece_area_shares
from backend.inference.predictor import Predictor
from backend.io.npz import load_npz
from heldout import append_row, fold_options, pending_rigs

SHARES = (0.05, 0.15, 0.5)


def inside_bones(verts: np.ndarray, mids: np.ndarray, hull: bool) -> np.ndarray:
    """Indices of the points ``mids`` inside the piece (its convex hull, or its bounding box)."""
    if hull:
        try:
            return np.flatnonzero(Delaunay(verts).find_simplex(mids) >= 0)
        except (QhullError, ValueError):
            return np.zeros(0, int)
    lo, hi = verts.min(0), verts.max(0)
    return np.flatnonzero(np.all((mids >= lo) & (mids <= hi), axis=1))


def box_rule(w: np.ndarray, rig, max_share: float, hull: bool) -> tuple[np.ndarray, int]:
    count, labels, _a, share = piece_area_shares(rig.vertices, rig.faces)
    out = w.copy()
    if count < 2:
        return out, 0
    deform = np.flatnonzero(rig.is_deform)
    mids = ((rig.joints + rig.tails) / 2)[deform]
    changed = 0
    for p in np.flatnonzero(share < max_share):
        idx = np.flatnonzero(labels == p)
        if len(idx) < 4:
            continue
        inside = inside_bones(rig.vertices[idx], mids, hull)
        if len(inside) == 1:
            out[idx] = 0.0
            out[idx, deform[inside[0]]] = 1.0
            changed += 1
    return out, changed


def main() -> None:
    a = fold_options()
    pred = Predictor(Path(a.cv) / f"fold{a.fold}" / "cv_rt-s3d05.onnx", threads=1)
    path, files = pending_rigs(a)
    for f in files:
        rig = load_npz(f)
        w = pred.predict(rig).weights
        m = evaluate_weights(rig, w)
        row: dict = {"rig": f.name, "fold": a.fold, "V": rig.num_vertices, "base": [m["l1"], m["deform_mean"]]}
        for hull in (True, False):
            for s in SHARES:
                v, n = box_rule(w, rig, s, hull)
                m = evaluate_weights(rig, v) if n else {"l1": row["base"][0], "deform_mean": row["base"][1]}
                row[f"{'hull' if hull else 'aabb'}{s:g}"] = [m["l1"], m["deform_mean"], n]
        append_row(path, row)
        print(f.name, row["base"], row["hull0.15"], row["aabb0.15"], flush=True)


if __name__ == "__main__":
    main()
