"""Evaluate skinning methods on a folder of weighted rigs (.npz layout).

Writes OUT/results.jsonl (one row per (rig, method), appended as it goes), OUT/results.csv,
OUT/summary.md (means over rigs per method, and per kind from the manifest) and, with
--pictures N, OUT/figures/<rig>.png for the first N rigs.

Methods: nearest, envelope[:T] (T = temperature as a fraction of the bbox diagonal, default 0.01),
geodesic, boneheat, heat[:SETTINGS], model:PATH.onnx (the runtime as shipped),
model-all-bones:PATH.onnx (helper bones not skipped). Example:

  python -m backend evaluate ../shared/data/rigs/test --methods nearest,envelope --out runs/eval_test
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "evaluate"
HELP = "score skinning methods against painted weights (metrics, deformation error, pictures)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="folder of weighted .npz rigs (or one .npz file)")
    parser.add_argument("--methods", default="nearest,envelope",
                        help="comma-separated: nearest, envelope[:T], geodesic, boneheat, heat[:SETTINGS], "
                             "model:PATH.onnx, model-all-bones:PATH.onnx "
                             "(default: nearest,envelope)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--manifest", default=None,
                        help="manifest.jsonl giving each file's kind (default: found in DATA or up to two "
                             "folders above)")
    parser.add_argument("--poses", type=int, default=10,
                        help="random poses per rig for the deformation error (default 10)")
    parser.add_argument("--max-angle", type=float, default=30.0,
                        help="largest per-bone rotation in degrees (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random poses (default 0)")
    parser.add_argument("--pictures", type=int, default=0, metavar="N", help="draw pictures for the first N rigs")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate only the first N rigs")
    parser.add_argument("--resume", action="store_true", help="keep OUT/results.jsonl and skip the pairs already done")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from backend.evaluation.baselines import make_method
    from backend.io.outputs import check_output_folder
    from backend.evaluation.runner import (EvalConfig, find_manifest, find_rig_files, load_manifest_kinds,
                                           run_evaluation)

    if args.poses < 1:
        print("error: --poses must be at least 1", file=sys.stderr)
        return 2
    files = find_rig_files(args.data)
    if args.limit > 0:
        files = files[:args.limit]
    specs = [s for s in args.methods.split(",") if s.strip()]
    if not specs:
        print("error: --methods names no method", file=sys.stderr)
        return 2
    methods = [make_method(s) for s in specs]  # MethodUnavailable (a RigError) -> clear error, exit 2
    check_output_folder(args.out, [args.data])
    manifest = Path(args.manifest) if args.manifest else find_manifest(args.data)
    if args.manifest and not manifest.is_file():
        print(f"error: {manifest}: no such manifest", file=sys.stderr)
        return 2
    kinds = load_manifest_kinds(manifest) if manifest else {}
    config = EvalConfig(num_poses=args.poses, max_angle_deg=args.max_angle, seed=args.seed)
    outcome = run_evaluation(files, methods, args.out, kinds=kinds, config=config, resume=args.resume,
                             pictures=args.pictures, progress=not args.no_progress, data_label=str(args.data))
    out = Path(args.out)
    print(f"{len(outcome.rows)} results ({len(files)} rigs x {len(methods)} methods), "
          f"{len(outcome.broken)} broken files skipped")
    print(f"wrote {out / 'results.jsonl'}, {out / 'results.csv'}, {out / 'summary.md'}")
    if outcome.interrupted:
        print("interrupted: partial results kept", file=sys.stderr)
        return 130
    return 0
