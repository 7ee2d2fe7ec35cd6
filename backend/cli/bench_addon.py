"""Time the Auto Skin operator against Blender's Ctrl+P > With Automatic Weights (bone heat) on the
same generated scene (default: a 50k-vertex, 60-bone four-legged creature, the one of
``bench-features``), both run headless through bpy.ops in this process.

Prints, for each: wall time, vertices left without any weight, and the most / mean influences
per vertex. The add-on is registered from the repository's ``addon/`` package.
"""
from __future__ import annotations

import argparse

NAME = "bench-addon"
HELP = "time Auto Skin vs Blender's automatic weights on one generated scene"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vertices", type=int, default=50000, help="mesh size (default: %(default)s)")
    parser.add_argument("--bones", type=int, default=60, help="bones (default: %(default)s)")
    parser.add_argument("--mode", choices=("auto", "learned", "geodesic", "heat"), default="auto",
                        help="Auto Skin mode; auto: learned when the model file exists, else geodesic")
    parser.add_argument("--model", default="", help="ONNX model (default: models/autoskin.onnx)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--max-influences", type=int, default=4, help="Auto Skin's limit (default: %(default)s)")
    parser.add_argument("--no-blender", action="store_true", help="skip Blender's bone heat")


def _influence_stats(mesh_obj) -> tuple[int, int, float]:
    """(vertices without weight, most influences, mean influences) of a mesh's vertex groups."""
    import numpy as np

    counts = np.array([sum(1 for g in v.groups if g.weight > 0.0) for v in mesh_obj.data.vertices])
    return int((counts == 0).sum()), int(counts.max(initial=0)), float(counts.mean()) if len(counts) else 0.0


def _strip(mesh_obj) -> None:
    mesh_obj.modifiers.clear()
    mesh_obj.parent = None
    for g in list(mesh_obj.vertex_groups):
        mesh_obj.vertex_groups.remove(g)


def _select(mesh_obj, arm_obj) -> None:
    import bpy

    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    mesh_obj.select_set(True)
    arm_obj.select_set(True)
    bpy.context.view_layer.objects.active = arm_obj


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile
    import time
    from pathlib import Path

    from tqdm import tqdm

    if args.vertices < 100 or args.bones < 1:
        print("error: --vertices must be >= 100 and --bones >= 1")
        return 2
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="autoskin_bench_"))
    import bpy

    import addon
    from addon import _bootstrap
    from backend.blender.scene import build_objects
    from backend.cli.bench_features import make_creature

    model = args.model or _bootstrap.default_model_path()
    mode = args.mode
    if mode == "auto":
        mode = "learned" if Path(model).is_file() else "geodesic"
    steps = tqdm(total=4 if not args.no_blender else 3, desc="bench-addon", unit="step")
    bpy.ops.wm.read_homefile(use_empty=True)
    addon.register()
    try:
        rig = make_creature(args.vertices, args.bones)
        mesh_obj, arm_obj = build_objects(rig, with_weights=False)
        _strip(mesh_obj)
        steps.update()
        _select(mesh_obj, arm_obj)
        t0 = time.perf_counter()
        try:
            res = bpy.ops.autoskin.auto_skin(mode=mode.upper(), model_path=str(model) if mode == "learned" else "",
                                             device=args.device.upper(), max_influences=args.max_influences)
        except RuntimeError as exc:
            print(f"error: Auto Skin failed: {exc}")
            return 1
        t_auto = time.perf_counter() - t0
        auto_stats = _influence_stats(mesh_obj)
        steps.update()
        rows = [(f"Auto Skin ({mode})", t_auto, *auto_stats, sorted(res))]
        if not args.no_blender:
            _strip(mesh_obj)
            _select(mesh_obj, arm_obj)
            t0 = time.perf_counter()
            res = bpy.ops.object.parent_set(type="ARMATURE_AUTO")
            t_heat = time.perf_counter() - t0
            rows.append(("Blender automatic weights", t_heat, *_influence_stats(mesh_obj), sorted(res)))
            steps.update()
        steps.update()
    finally:
        steps.close()
        addon.unregister()
    print(f"scene: {rig.num_vertices} vertices, {int(rig.is_deform.sum())} bones, {len(rig.faces)} triangles")
    print(f"{'method':<28} {'seconds':>8} {'unweighted':>10} {'max infl':>8} {'mean infl':>9}  result")
    for name, sec, empty, most, mean, result in rows:
        print(f"{name:<28} {sec:8.2f} {empty:10d} {most:8d} {mean:9.2f}  {','.join(result)}")
    return 0
