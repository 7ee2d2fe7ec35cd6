"""Time Auto Skin (features + ONNX + post-processing) against Blender's bone heat on the same meshes.

Generated four-legged creatures (backend.cli.bench_features.make_creature) of 5k / 20k / 50k /
200k vertices x 20 / 60 / 150 bones, all in this one process: for each size it prints the
seconds of the learned model (the shipped one unless --model), of the geodesic mode, and of
Blender's "With Automatic Weights", the ratio bone heat / ours, and peak memory (numpy
allocations traced by tracemalloc while predicting; onnxruntime's own arena is not traced, so
the process's peak resident size is printed too). Bone heat above --boneheat-max-vertices is
skipped (it takes minutes there) and marked as such.
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

NAME = "bench"
HELP = "time Auto Skin (learned, geodesic) against Blender bone heat on generated meshes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vertices", default="5000,20000,50000,200000", help="vertex counts (comma-separated)")
    p.add_argument("--bones", default="20,60,150", help="bone counts (comma-separated)")
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped models/autoskin.onnx)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per case (the best is printed)")
    p.add_argument("--boneheat-max-vertices", type=int, default=60000,
                   help="skip Blender bone heat above this many vertices (default 60000)")
    p.add_argument("--no-boneheat", action="store_true", help="do not run Blender")


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _traced_peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def run(args: argparse.Namespace) -> int:
    from backend.cli.bench_features import make_creature
    from backend.inference.predictor import Predictor, default_model_path

    model = args.model or str(default_model_path())
    learned = Predictor(model_path=model, mode="learned", threads=args.threads)
    geodesic = Predictor(mode="geodesic")
    boneheat = None
    if not args.no_boneheat:
        from backend.blender.boneheat import bone_heat_weights as boneheat
    print(f"model: {model}")
    head = (f"{'V':>7} {'J':>4} | {'learned s':>9} {'geodesic s':>10} {'bone heat s':>11} | "
            f"{'bh/learned':>12} {'bh/geodesic':>13} | {'traced MiB':>10} {'peak RSS MiB':>12}")
    print(head)
    print("-" * len(head))
    for nv in [int(v) for v in args.vertices.split(",")]:
        for nb in [int(b) for b in args.bones.split(",")]:
            rig = make_creature(nv, nb)
            learned.predict(rig)  # warm-up: session creation, caches
            t_learned = _best(lambda: learned.predict(rig), args.repeat)
            t_geo = _best(lambda: geodesic.predict(rig), args.repeat)
            traced = _traced_peak_mib(lambda: learned.predict(rig))
            if boneheat is not None and rig.num_vertices <= args.boneheat_max_vertices:
                t_heat = _best(lambda: boneheat(rig), 1)
                heat_s = f"{t_heat:11.2f}"
                r1, r2 = f"{t_heat / t_learned:12.1f}x", f"{t_heat / t_geo:12.1f}x"
            else:
                heat_s, r1, r2 = f"{'skipped':>11}", f"{'-':>13}", f"{'-':>13}"
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{rig.num_vertices:7d} {nb:4d} | {t_learned:9.2f} {t_geo:10.2f} {heat_s} | {r1}{r2} | "
                  f"{traced:10.0f} {rss:12.0f}", flush=True)
    return 0
