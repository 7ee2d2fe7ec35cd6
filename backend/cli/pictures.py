"""Draw pictures comparing skinning methods on one weighted rig (.npz layout).

Writes OUT/<rig>_weights.png (dominant bone and weight heat maps: ground truth | methods) and
OUT/<rig>_poses.png (random poses skinned by each method, coloured by distance to the truth). Example:

  python -m backend pictures ../shared/data/rigs/val/quaternius_b2b__Dolphin.npz --methods nearest,envelope --out figs
"""
from __future__ import annotations

import argparse

NAME = "pictures"
HELP = "draw ground truth | method pictures (weights and posed meshes) for one rig"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rig", help="a weighted .npz rig")
    parser.add_argument("--methods", default="nearest,envelope",
                        help="comma-separated methods as for `evaluate` (default: nearest,envelope)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--poses", type=int, default=3, help="random poses to draw (default 3)")
    parser.add_argument("--max-angle", type=float, default=30.0, help="largest per-bone rotation in degrees")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random poses")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from backend.evaluation.baselines import make_method
    from backend.evaluation.pictures import poses_figure, weights_figure
    from backend.evaluation.runner import run_method
    from backend.io.npz import load_npz
    from backend.rig import RigError

    rig = load_npz(args.rig)
    if rig.weights is None:
        raise RigError(f"{args.rig}: has no ground-truth weights to draw against")
    preds = {}
    for spec in [s for s in args.methods.split(",") if s.strip()]:
        label, fn = make_method(spec)
        preds[label] = run_method(fn, rig)[0]
    out, stem = Path(args.out), Path(args.rig).stem
    paths = [weights_figure(rig, preds, out / f"{stem}_weights.png"),
             poses_figure(rig, preds, out / f"{stem}_poses.png", args.poses, args.max_angle, args.seed)]
    for p in paths:
        print(f"wrote {p}")
    return 0
