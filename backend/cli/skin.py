"""Predict skin weights for one rigged asset and write it back skinned.

INPUT: .npz (the project's rig layout; any weights in it are ignored) or .glb / .gltf / .fbx /
.blend (through Blender's Python module). OUTPUT: .npz, or .glb / .blend with vertex groups.
The learned mode needs a model (models/autoskin.onnx, $AUTOSKIN_MODEL or --model); the
geodesic mode needs none.
"""
from __future__ import annotations

import argparse

from backend.cli._types import bounded
from backend.inference.postprocess import DEFAULT_PRUNE, MAX_DIFFUSE
from backend.inference.runtime_settings import RANGES

NAME = "skin"
HELP = "predict skin weights for one file (npz, glb, gltf, fbx, blend)"


def setting_type(name: str, what: str):
    """An argparse type for run-time setting ``name`` over its range (runtime_settings.RANGES)."""
    rng = RANGES[name]
    return bounded(int if rng.whole else float, rng.low, rng.high, what, open_high=rng.open_high)


unit_interval = setting_type("prior_blend", "a number")
sharpen_power = setting_type("sharpen", "a sharpening power")
smooth_iterations = setting_type("smooth", "smoothing iterations, a whole number")
diffuse_percent = setting_type("diffuse", "a diffusion reach in % of the character's size")
prune_threshold = setting_type("prune", "a weight threshold")
surface_share = setting_type("enclosing_pieces", "a share of the surface")
influence_count = bounded(int, 0, what="bones per vertex, a whole number")
thread_count = bounded(int, 1, what="threads, a whole number")


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared with ``predict``."""
    p.add_argument("--mode", choices=("learned", "geodesic", "heat"), default="learned",
                   help="learned model (default), or model-free: geodesic prior or heat diffusion")
    p.add_argument("--model", default=None, help="ONNX model (default: $AUTOSKIN_MODEL or models/autoskin.onnx)")
    p.add_argument("--max-influences", type=influence_count, default=4,
                   help="bones per vertex at most, 0 = no limit (4)")
    p.add_argument("--prune", type=prune_threshold, default=DEFAULT_PRUNE,
                   help=f"fade out weights below this, 0 <= P < 1 ({DEFAULT_PRUNE})")
    p.add_argument("--smooth", type=smooth_iterations, default=None,
                   help="Laplacian smoothing iterations over the mesh, 0..20 (default: the model's own choice, "
                        "none for the shipped model; 0 in the model-free modes)")
    p.add_argument("--diffuse", type=diffuse_percent, default=None, metavar="PCT",
                   help="heat diffusion of the weights over the surface, reach in %% of the character's size, "
                        f"0..{MAX_DIFFUSE:g} (default: the model's own choice; 0 in the model-free modes). Unlike "
                        "--smooth it blurs a dense and a low-poly mesh alike")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="execution provider (auto)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="onnxruntime threads, >= 1 (default: onnxruntime's)")
    p.add_argument("--prior-blend", type=unit_interval, default=None, metavar="B",
                   help="learned mode: B x the model + (1 - B) x its heat prior, 0..1 (default: the model's own "
                        "choice; 1 = the network alone)")
    p.add_argument("--sharpen", type=sharpen_power, default=None, metavar="P",
                   help="learned mode: raise the weights to this power before limiting the influences, 1..10 "
                        "(default: the model's own choice; 1 = none)")
    p.add_argument("--enclosing-pieces", type=surface_share, default=None, metavar="SHARE",
                   help="learned mode: a separate piece under this share of the surface whose hull holds the middle "
                        "of exactly one bone goes to that bone alone, 0..1 (default: the model's own choice; "
                        "0 = never)")
    p.add_argument("--keep-helper-bones", action="store_true",
                   help="also weight bones that by convention carry no skin (*_end chain ends, pole targets); "
                        "by default they are left empty")
    p.add_argument("--rigid-pieces", action="store_true",
                   help="learned mode: put each small separate piece (eye, gun, armour plate) on one bone when the "
                        "network and the geometry agree on it; for mechanical models (off by default)")


def make_predictor(args: argparse.Namespace):
    """The Predictor the common options ask for; the run-time settings given (--prior-blend, --sharpen,
    --smooth, --diffuse, --prune, --enclosing-pieces) override the model's own (``Predictor.settings``)."""
    from backend.inference.predictor import Predictor
    from backend.inference.runtime_settings import overrides_from

    return Predictor(args.model, mode=args.mode, device=args.device, threads=args.threads,
                     skip_helpers=not args.keep_helper_bones, rigid_pieces=args.rigid_pieces,
                     overrides=overrides_from(vars(args)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="rig file: .npz, .glb, .gltf, .fbx or .blend")
    p.add_argument("output", help="output: .npz, .glb or .blend")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from backend.inference.rigfiles import check_skinned_output, read_rig_for_prediction, write_skinned_rig

    check_skinned_output(args.output, args.input)
    predictor = make_predictor(args)
    rig = read_rig_for_prediction(args.input)
    pred = predictor.predict(rig, max_influences=args.max_influences)
    out = write_skinned_rig(rig.with_weights(pred.weights), args.output)
    print(f"{args.input}: {rig.num_vertices} vertices, {rig.num_bones} bones -> {out} "
          f"({pred.mode}, {pred.provider}, {pred.seconds:.2f} s)")
    return 0
