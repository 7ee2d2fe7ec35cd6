"""Score one fold's held-out rigs with the fold model under several geodesic mixes (one JSON line per rig).

    python experiments/enclosing_pieces/score_shares.py --fold N --cv runs/cv/recipe --out DIR

Per rig: the fold model with the shipped run-time settings (cv_rt-s3d05.onnx) and ``geodesic_share``
s in SHARES (the geodesic falloff over the candidates mixed in before the clean-up), the geodesic
mode, and the model's output mixed after the clean-up with the geodesic mode's at a in MIXES; each
scored by ``evaluate_weights`` (the metrics of ``evaluate``). Also writes the rig's mesh signals.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.evaluation.runner import evaluate_weights
from backend.features.topology import MeshTopology
from backend.inference.predictor import Predictor
from backend.io.npz import load_npz
from heldout import append_row, fold_options, pending_rigs

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
MIXES = (0.25, 0.5, 0.75)


def signals(rig) -> dict:
    """Mesh-against-skeleton signals a per-rig rule could read at run time."""
    topo = MeshTopology(rig.faces, rig.num_vertices)
    e = topo.edges
    edge = np.linalg.norm(rig.vertices[e[:, 0]] - rig.vertices[e[:, 1]], axis=1)
    deform = np.asarray(rig.is_deform, bool)
    bone = np.linalg.norm(rig.tails - rig.joints, axis=1)[deform]
    size = float(np.linalg.norm(rig.vertices.max(0) - rig.vertices.min(0)))
    jd = max(int(deform.sum()), 1)
    return {"V": int(rig.num_vertices), "Jd": int(deform.sum()), "v_per_bone": rig.num_vertices / jd,
            "edge_over_bone": float(np.median(edge) / max(np.median(bone), 1e-9)),
            "edge_over_size": float(np.median(edge) / max(size, 1e-9)), "pieces": int(topo.pieces[0])}


def main() -> None:
    a = fold_options()
    model = Path(a.cv) / f"fold{a.fold}" / "cv_rt-s3d05.onnx"
    preds = {s: Predictor(model, threads=1, overrides={"geodesic_share": s}) for s in SHARES}
    geo = Predictor(mode="geodesic", threads=1)
    path, files = pending_rigs(a)
    for f in files:
        rig = load_npz(f)
        row: dict = {"rig": f.name, "fold": a.fold, **signals(rig)}
        outs = {s: pr.predict(rig).weights for s, pr in preds.items()}
        g = geo.predict(rig).weights
        for s, w in outs.items():
            m = evaluate_weights(rig, w)
            row[f"share{s:g}"] = [m["l1"], m["deform_mean"]]
        m = evaluate_weights(rig, g)
        row["geodesic"] = [m["l1"], m["deform_mean"]]
        for mix in MIXES:
            w = (1 - mix) * outs[0.0] + mix * g
            m = evaluate_weights(rig, w)
            row[f"mix{mix:g}"] = [m["l1"], m["deform_mean"]]
        append_row(path, row)
        print(f.name, row["share0"], row["geodesic"], flush=True)


if __name__ == "__main__":
    main()
