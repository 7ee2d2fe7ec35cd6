"""Study of the rigid-pieces option (backend/inference/rigid_pieces.py) on labelled folders.

Predicts every rig once with the model as shipped (option off), then applies ``rigid_pieces`` with
each (max_share, min_agreement) setting and prints the mean per-vertex L1 per folder, with how many
rigs got better or worse by more than 0.005. The first folders choose (their mean), the ones after
``--report`` are only reported.

Usage: PYTHONPATH=. python experiments/model2_chain/rigid_pieces_study.py [--model models/autoskin.onnx]
       runs/views/shipped/val runs/views/shipped/out_of_style --report runs/views/shipped/test
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from backend.evaluation.metrics import l1_per_vertex, restrict
from backend.features.helper_bones import without_helpers
from backend.inference.predictor import Predictor
from backend.inference.rigid_pieces import rigid_pieces
from backend.io.npz import list_rig_files, load_npz

SHARES = (0.02, 0.05, 0.1, 0.2)
AGREEMENTS = (0.0, 0.7, 0.8, 0.9)


def folder_l1(predictor: Predictor, folder: Path, settings: list[tuple[float, float]]) -> np.ndarray:
    """(rigs, 1 + len(settings)) L1 of each rig: the prediction as shipped, then with each setting."""
    rows = []
    for f in list_rig_files(folder):
        rig = load_npz(f)
        pred = predictor.predict(rig)
        # the bones the runtime may weight (the Predictor skips helper bones the same way)
        allowed = without_helpers(rig)[0].is_deform if predictor.skip_helpers else rig.is_deform
        row = [l1_per_vertex(*restrict(rig.weights, pred.weights, rig.is_deform)[:2])]
        for share, agreement in settings:
            w, _ = rigid_pieces(pred.weights, rig.vertices, rig.faces, rig.joints, rig.tails, allowed,
                                max_share=share, min_agreement=agreement)
            row.append(l1_per_vertex(*restrict(rig.weights, w, rig.is_deform)[:2]))
        rows.append(row)
    return np.asarray(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="folders that choose the setting")
    ap.add_argument("--report", nargs="*", type=Path, default=[], help="folders only reported")
    ap.add_argument("--model", default="models/autoskin.onnx")
    args = ap.parse_args()
    settings = list(itertools.product(SHARES, AGREEMENTS))
    predictor = Predictor(args.model, threads=1)
    results = {f: folder_l1(predictor, f, settings) for f in [*args.folders, *args.report]}
    names = [f.name for f in results]
    print("setting (max_share, min_agreement) | choose mean | " + " | ".join(names))
    print(f"as shipped (off) | {np.mean([results[f][:, 0].mean() for f in args.folders]):.4f} | "
          + " | ".join(f"{r[:, 0].mean():.4f}" for r in results.values()))
    for i, s in enumerate(settings, start=1):
        choose = np.mean([results[f][:, i].mean() for f in args.folders])
        cells = [f"{r[:, i].mean():.4f} (+{int((r[:, i] < r[:, 0] - 0.005).sum())} "
                 f"-{int((r[:, i] > r[:, 0] + 0.005).sum())})" for r in results.values()]
        print(f"{s} | {choose:.4f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
