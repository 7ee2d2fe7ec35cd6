"""Time the Auto Skin operator against Blender's Ctrl+P > With Automatic Weights (bone heat) on the
same scene (default: a 50k-vertex, 60-bone four-legged creature, the one of ``bench-features``; or
a rig file, optionally subdivided by Blender), both run headless through bpy.ops in this process.

Prints, for each: wall time, vertices left without any weight, and the most / mean influences
per vertex; then the ratio automatic weights / Auto Skin measured in this run (for the first,
cold run, which opens the model, and for the best of the later ones with --repeat), and the
process's peak resident memory after Auto Skin (before bone heat runs) and at the end. The add-on
is registered from the repository's ``addon/`` package. ``--compare`` runs Auto Skin in turns with the
first geodesic search (``search="reference"``, backend.features.geodesic) and the current one and
prints their ratio (best of the runs after the first pair).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "bench-addon"
HELP = "time Auto Skin vs Blender's automatic weights on one generated scene"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vertices", type=int, default=50000, help="mesh size (default: %(default)s)")
    parser.add_argument("--bones", type=int, default=60, help="bones (default: %(default)s)")
    parser.add_argument("--rig", default="", help="an .npz rig to use instead of the generated creature "
                                                  "(its weights are ignored)")
    parser.add_argument("--subdivide", type=int, default=0,
                        help="subdivide the mesh this many times first (Blender's simple subdivision)")
    parser.add_argument("--mode", choices=("auto", "learned", "geodesic", "heat"), default="auto",
                        help="Auto Skin mode; auto: learned when the model file exists, else geodesic")
    parser.add_argument("--model", default="", help="ONNX model (default: models/autoskin.onnx)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--max-influences", type=int, default=4, help="Auto Skin's limit (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Auto Skin runs (the first opens the model; default: %(default)s)")
    parser.add_argument("--no-blender", action="store_true", help="skip Blender's bone heat")
    parser.add_argument("--compare", action="store_true",
                        help="each run twice, with the first geodesic search and the current one, and their ratio")


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
    for key in [k for k in mesh_obj.keys() if k.startswith("autoskin_")]:
        del mesh_obj[key]


def _select(mesh_obj, arm_obj) -> None:
    import bpy

    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    mesh_obj.select_set(True)
    arm_obj.select_set(True)
    bpy.context.view_layer.objects.active = arm_obj


def _subdivide(mesh_obj, levels: int) -> None:
    """Replace the object's mesh by its simple subdivision (``levels`` times)."""
    import bpy

    mod = mesh_obj.modifiers.new("bench_subdivide", "SUBSURF")
    mod.subdivision_type = "SIMPLE"
    mod.levels = levels
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    old = mesh_obj.data
    mesh_obj.data = bpy.data.meshes.new_from_object(mesh_obj.evaluated_get(depsgraph))
    mesh_obj.modifiers.remove(mod)
    bpy.data.meshes.remove(old)


def _peak_rss_mib() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _check(args: argparse.Namespace) -> str:
    """'' when the arguments can run, else a one-line error."""
    from backend.cli.bench_features import MIN_BONES

    if not args.rig and (args.vertices < 100 or args.bones < MIN_BONES):
        return f"--vertices must be >= 100 and --bones >= {MIN_BONES}"
    if args.rig and not (Path(args.rig).is_file() and args.rig.endswith(".npz")):
        return f"--rig {args.rig}: not an .npz file"
    if not 0 <= args.subdivide <= 4:
        return "--subdivide must be in 0..4"
    if args.repeat < 1:
        return "--repeat must be >= 1"
    return ""


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile
    import time

    from tqdm import tqdm

    problem = _check(args)
    if problem:
        print(f"error: {problem}")
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
    steps = tqdm(total=args.repeat + 2 + (0 if args.no_blender else 1), desc="bench-addon", unit="step")
    bpy.ops.wm.read_homefile(use_empty=True)
    addon.register()
    try:
        if args.rig:
            from backend.io.npz import load_npz

            rig = load_npz(args.rig).without_weights()
        else:
            rig = make_creature(args.vertices, args.bones)
        mesh_obj, arm_obj = build_objects(rig, with_weights=False)
        _strip(mesh_obj)
        if args.subdivide:
            _subdivide(mesh_obj, args.subdivide)
        steps.update()
        from backend.features import geodesic

        rows, auto_times, first_times = [], [], []
        searches = ("reference", "auto") if args.compare else (geodesic.SEARCH,)
        saved = geodesic.SEARCH
        for n in range(args.repeat):
            for search in searches:
                geodesic.SEARCH = search
                _strip(mesh_obj)
                _select(mesh_obj, arm_obj)
                t0 = time.perf_counter()
                try:
                    res = bpy.ops.autoskin.auto_skin(mode=mode.upper(),
                                                     model_path=str(model) if mode == "learned" else "",
                                                     device=args.device.upper(), max_influences=args.max_influences)
                except RuntimeError as exc:
                    print(f"error: Auto Skin failed: {exc}")
                    return 1
                finally:
                    geodesic.SEARCH = saved
                seconds = time.perf_counter() - t0
                (first_times if search == "reference" and args.compare else auto_times).append(seconds)
                run_note = "" if args.repeat == 1 else (", first run" if n == 0 else f", run {n + 1}")
                label = f"Auto Skin ({mode})" + run_note + (", first search" if search == "reference" else "")
                rows.append((label, seconds, *_influence_stats(mesh_obj), sorted(res)))
            steps.update()
        rss_auto = _peak_rss_mib()
        t_heat = None
        if not args.no_blender:
            _strip(mesh_obj)
            _select(mesh_obj, arm_obj)
            t0 = time.perf_counter()
            res = bpy.ops.object.parent_set(type="ARMATURE_AUTO")
            t_heat = time.perf_counter() - t0
            rows.append(("Blender automatic weights", t_heat, *_influence_stats(mesh_obj), sorted(res)))
            steps.update()
        steps.update()
        mesh_obj.data.calc_loop_triangles()
        faces = len(mesh_obj.data.loop_triangles)
        n_vertices = len(mesh_obj.data.vertices)
    finally:
        steps.close()
        addon.unregister()
    print(f"scene: {n_vertices} vertices, {int(rig.is_deform.sum())} bones, {faces} triangles"
          + (f" ({args.rig}, subdivided {args.subdivide}x)" if args.rig else ""))
    width = max([32] + [len(r[0]) for r in rows])
    print(f"{'method':<{width}} {'seconds':>8} {'unweighted':>10} {'max infl':>8} {'mean infl':>9}  result")
    for name, sec, empty, most, mean, result in rows:
        print(f"{name:<{width}} {sec:8.2f} {empty:10d} {most:8d} {mean:9.2f}  {','.join(result)}")
    if t_heat is not None:
        ratio = f"automatic weights / Auto Skin: {t_heat / auto_times[0]:.2f}x"
        if len(auto_times) > 1:
            ratio += f" (first run), {t_heat / min(auto_times[1:]):.2f}x (best later run)"
        print(ratio)
    if first_times:
        later = slice(1, None) if len(auto_times) > 1 else slice(None)
        print(f"first geodesic search / current: {min(first_times[later]) / min(auto_times[later]):.2f}x "
              f"(best {'of the later runs' if len(auto_times) > 1 else 'run'}: {min(first_times[later]):.3f} s / "
              f"{min(auto_times[later]):.3f} s)")
    print(f"peak RSS: {rss_auto:.0f} MiB after Auto Skin, {_peak_rss_mib():.0f} MiB at the end")
    return 0
