"""Can post-processing alone close the gap? Sweeps run-time clean-ups over saved raw predictions.

For every rig of the given folders the shipped model's raw generator and prior weights (helper bones
skipped, no influence limit, no pruning) are computed once and kept in ``--raw``; the sweeps then
only re-run the cheap clean-up. Printed per folder: mean per-rig L1, dominant-bone accuracy,
influence precision and recall (the ``evaluate`` metrics, without deformation).

* ``pieces``: separate mesh pieces holding at most ``frac`` of the vertices, whose mean predicted
  weight has a largest entry >= ``tau``, get that mean ("soft") or its largest bone only ("hard").
* ``cleanup``: prior blend x sharpening power (w ** p) x prune threshold x influence limit.

    PYTHONPATH=. python experiments/model2_chain/postprocess_study.py --model models/autoskin.onnx \\
        runs/views/shipped/val runs/views/shipped/test runs/views/shipped/out_of_style
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from backend.evaluation.metrics import dominant_accuracy, influence_precision_recall, l1_per_vertex, restrict
from backend.features.pieces import mesh_pieces
from backend.inference.postprocess import postprocess
from backend.inference.predictor import Predictor
from backend.io.npz import list_rig_files, load_npz


def dump(model: str, folder: Path, raw: Path) -> list[dict]:
    """Raw (V, J) generator and prior weights, truth, faces, deform mask per rig (cached as .npz)."""
    out = raw / folder.name
    out.mkdir(parents=True, exist_ok=True)
    pred = None
    rows = []
    for f in list_rig_files(folder):
        dst = out / (Path(f).stem + ".npz")
        if not dst.is_file():
            pred = pred or Predictor(model)
            rig = load_npz(f)
            gen, prior = pred.predict_blends(rig, [1.0, 0.0], max_influences=0, prune=0.0, smooth=0)
            np.savez(dst, truth=rig.weights, model=gen.weights, prior=prior.weights, faces=rig.faces,
                     is_deform=rig.is_deform)
        d = np.load(dst)
        rows.append({k: d[k] for k in d.files})
    return rows


def rigid_pieces(w: np.ndarray, faces: np.ndarray, frac: float, tau: float, hard: bool) -> np.ndarray:
    """(V, J) weights with small separate pieces made rigid (see the module docstring)."""
    w = w.copy()
    count, labels = mesh_pieces(faces, len(w))
    if count <= 1:
        return w
    for c in range(count):
        idx = np.flatnonzero(labels == c)
        if len(idx) > frac * len(w):
            continue
        mean = w[idx].mean(axis=0)
        if mean.max() < tau:
            continue
        if hard:
            mean = (np.arange(len(mean)) == mean.argmax()).astype(w.dtype)
        w[idx] = mean
    return w


def score(rows: list[dict], blend: float, transform=None, **clean) -> np.ndarray:
    """Mean over rigs of (L1, dominant accuracy, precision, recall)."""
    out = []
    for r in rows:
        w = blend * r["model"] + (1.0 - blend) * r["prior"]
        if transform is not None:
            w = transform(w, r)
        w = postprocess(w, r["faces"], allowed=r["is_deform"], **clean)
        t, p, _ = restrict(r["truth"], w, r["is_deform"])
        out.append([l1_per_vertex(t, p), dominant_accuracy(t, p), *influence_precision_recall(t, p)])
    return np.mean(out, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--model", default="models/autoskin.onnx")
    ap.add_argument("--raw", type=Path, default=Path("runs/postprocess_raw"))
    ap.add_argument("--blend", type=float, default=0.5, help="prior blend of the pieces sweep")
    ap.add_argument("--study", choices=["pieces", "cleanup", "both"], default="both")
    args = ap.parse_args()
    data = {f.name: dump(args.model, f, args.raw) for f in args.folders}

    def show(name: str, fn) -> None:
        cells = [f"{k} " + " ".join(f"{x:.3f}" for x in fn(rows)) for k, rows in data.items()]
        print(f"{name:30s} | " + " | ".join(cells), flush=True)

    print("columns per folder: L1, dominant acc, precision, recall")
    if args.study in ("pieces", "both"):
        show("as shipped", lambda rows: score(rows, args.blend))
        for frac, tau, hard in itertools.product([0.02, 0.05, 0.1, 0.2], [0.0, 0.4, 0.6, 0.8], [True, False]):
            tf = lambda w, r, a=(frac, tau, hard): rigid_pieces(w, r["faces"], *a)  # noqa: E731
            show(f"pieces<={frac} tau{tau} {'hard' if hard else 'soft'}",
                 lambda rows, tf=tf: score(rows, args.blend, tf))
    if args.study in ("cleanup", "both"):
        for b, p, prune, k in itertools.product([0.5, 0.6], [1.0, 1.5, 2.0], [0.05, 0.1, 0.15], [4, 3]):
            tf = None if p == 1.0 else (lambda w, r, p=p: w ** p)
            show(f"blend{b} p{p} prune{prune} k{k}",
                 lambda rows, b=b, tf=tf, prune=prune, k=k: score(rows, b, tf, max_influences=k, prune=prune))


if __name__ == "__main__":
    main()
