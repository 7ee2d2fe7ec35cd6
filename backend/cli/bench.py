"""Time Auto Skin (features + ONNX + post-processing) against Blender's bone heat on the same meshes.

Generated four-legged creatures (backend.cli.bench_features.make_creature) of 5k / 20k / 50k /
200k vertices x 20 / 60 / 150 bones, all in this one process: for each size it prints the
seconds of the learned model (the shipped one unless --model), of the geodesic mode, and of
Blender's "With Automatic Weights" (the ``parent_set`` operator alone, not the building of the
scratch scene around it), the ratios bone heat / ours measured in this run, and memory: the peak
of numpy allocations traced by tracemalloc while predicting (onnxruntime's own arena is not
traced), and the process's peak resident size after our runs (before bone heat runs on that size)
and at the end of the row. Bone heat above --boneheat-max-vertices is skipped (it takes minutes
there) and marked as such.
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
    p.add_argument("--light", action="store_true",
                   help="one learned run per size only (no warm-up, geodesic mode or traced run): for huge meshes")
    p.add_argument("--progress", action="store_true",
                   help="print each step of the learned runs (seconds, share done, resident memory) to stderr")


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
    from backend.cli.bench_features import MIN_BONES, make_creature
    from backend.inference.predictor import Predictor, default_model_path

    if args.repeat < 1:
        print("error: --repeat must be >= 1")
        return 2
    try:
        sizes = [int(v) for v in args.vertices.split(",")]
        bones = [int(b) for b in args.bones.split(",")]
    except ValueError:
        print(f"error: --vertices and --bones must be comma-separated integers, got {args.vertices!r}, {args.bones!r}")
        return 2
    if min(sizes) < 100 or min(bones) < MIN_BONES:
        print(f"error: --vertices must be >= 100 and --bones >= {MIN_BONES}")
        return 2
    model = args.model or str(default_model_path())
    learned = Predictor(model_path=model, mode="learned", threads=args.threads)
    geodesic = Predictor(mode="geodesic")
    boneheat = None
    if not args.no_boneheat:
        from backend.blender.boneheat import bone_heat_weights as boneheat
    print(f"model: {model}")
    head = (f"{'V':>7} {'J':>4} | {'learned s':>9} {'geodesic s':>10} {'bone heat s':>11} | "
            f"{'bh/learned':>12} {'bh/geodesic':>13} | {'traced MiB':>10} {'RSS ours MiB':>12} {'RSS end MiB':>11}")
    print(head)
    print("-" * len(head))
    for nv in sizes:
        for nb in bones:
            rig = make_creature(nv, nb)
            steps = _StepPrinter() if args.progress else None
            if not args.light:
                learned.predict(rig)  # warm-up: session creation, caches
            t_learned = _best(lambda: learned.predict(rig, progress=steps and steps.start()), args.repeat)
            t_geo = float("nan") if args.light else _best(lambda: geodesic.predict(rig), args.repeat)
            traced = float("nan") if args.light else _traced_peak_mib(lambda: learned.predict(rig))
            rss_ours = _peak_rss_mib()
            if boneheat is not None and rig.num_vertices <= args.boneheat_max_vertices:
                t_heat = min(boneheat(rig)[1]["operator_seconds"] for _ in range(args.repeat))
                heat_s = f"{t_heat:11.2f}"
                r1, r2 = f"{t_heat / t_learned:12.1f}x", f"{t_heat / t_geo:12.1f}x"
            else:
                heat_s, r1, r2 = f"{'skipped':>11}", f"{'-':>13}", f"{'-':>13}"
            print(f"{rig.num_vertices:7d} {nb:4d} | {t_learned:9.2f} {t_geo:10.2f} {heat_s} | {r1}{r2} | "
                  f"{traced:10.0f} {rss_ours:12.0f} {_peak_rss_mib():11.0f}", flush=True)
    return 0


class _StepPrinter:
    """A progress callback for Predictor.predict that prints one stderr line per step."""

    def start(self) -> "_StepPrinter":
        self.t0, self.stage = time.perf_counter(), None
        return self

    def __call__(self, stage: str, fraction: float) -> None:
        import sys

        if stage != self.stage:
            self.stage = stage
            print(f"  {time.perf_counter() - self.t0:7.1f} s  {stage:<16} {100 * fraction:5.1f} %  "
                  f"peak RSS {_peak_rss_mib():.0f} MiB", file=sys.stderr, flush=True)


def _peak_rss_mib() -> float:
    """The process's peak resident set size so far, MiB (Linux reports KiB, macOS bytes)."""
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
