"""Auto Skin the built-in sample character (or a rig file) and write a .blend, the weights and pictures.

With no arguments: a generated humanoid (fixed seed), the shipped model (models/autoskin.onnx; the
geodesic prior when no model is there), results in out/demo/.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

NAME = "demo"
HELP = "Auto Skin the built-in sample character; writes out/demo/ (.blend, weights .npz, pictures)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", default=None,
                   help="a rig file (.npz/.glb/.fbx/.blend); default: the built-in sample")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--mode", choices=["auto", "learned", "geodesic", "heat"], default="auto",
                   help="auto: the shipped model if present, else the geodesic prior")
    p.add_argument("--model", default=None, help="ONNX model file (default models/autoskin.onnx)")
    p.add_argument("--max-influences", type=int, default=4)
    p.add_argument("--seed", type=int, default=7, help="seed of the built-in sample character")


def _load_input(args) -> "Rig":  # noqa: F821
    if args.input is None:
        from backend.synth import sample_character

        return sample_character(kind="humanoid", seed=args.seed)
    from backend.inference.rigfiles import read_rig_for_prediction

    return read_rig_for_prediction(args.input, keep_weights=True)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from backend.inference.predictor import Predictor, default_model_path
    from backend.io.npz import save_npz

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rig = _load_input(args)
    truth = rig.weights
    print(f"[demo] character: {rig.name}  V={rig.num_vertices}  J={rig.num_bones} ({int(rig.is_deform.sum())} deform)")

    mode = args.mode
    model = Path(args.model) if args.model else default_model_path()
    if mode == "auto":
        mode = "learned" if model.is_file() else "geodesic"
        if mode == "geodesic":
            print(f"[demo] no trained model at {model}: using the geodesic prior (needs no model)")
    predictor = Predictor(model_path=str(model) if mode == "learned" else None, mode=mode)
    t0 = time.perf_counter()
    pred = predictor.predict(rig.without_weights(), max_influences=args.max_influences)
    secs = time.perf_counter() - t0
    w = pred.weights
    rows = w.sum(axis=1)
    print(f"[demo] Auto Skin ({pred.mode}, {pred.provider}): {secs:.2f} s; rows sum to 1: "
          f"{bool(np.allclose(rows, 1, atol=1e-4))}; max influences: {int((w > 0).sum(axis=1).max())}")
    if "prior_blend" in pred.info:
        pieces = pred.info.get("small_piece_share")
        print(f"[demo] network share {pred.info['prior_blend']:.2f}, the rest heat prior"
              + (f" ({pieces:.0%} of the surface in small separate pieces)" if pieces is not None else ""))
    skinned = rig.with_weights(w)
    npz_path = save_npz(skinned, out / "skinned.npz")
    print(f"[demo] weights: {npz_path}")

    from backend.blender.files import save_blend

    blend = save_blend(skinned, out / "skinned.blend")
    print(f"[demo] Blender file: {blend}")
    from backend.evaluation.pictures import poses_figure, weights_figure

    label = f"Auto Skin ({pred.mode})"
    if truth is not None:  # a weighted input: compare with its painted weights
        pics = [weights_figure(rig, {label: w}, out / "weights.png"),
                poses_figure(rig, {label: w}, out / "poses.png")]
    else:
        pics = [weights_figure(skinned, {}, out / "weights.png", truth_label=label),
                poses_figure(skinned, {}, out / "poses.png", truth_label=label)]
    for png in pics:
        print(f"[demo] picture: {png}")
    return 0
