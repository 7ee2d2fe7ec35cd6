"""Learn a studio's style from a few of its corrected characters and publish it as a new model version
(docs/adaptation.md).

Examples:
  python -m backend adapt --corrections ~/corrections --data ../shared/data/rigs
      # two corrections or more: the scoring head is trained too (the stop rule tries 0, 10, 20, 40 steps)
  python -m backend adapt --corrections DIR --data ../shared/data/rigs --no-train   # the settings refit alone
  python -m backend adapt --corrections DIR --dry-run          # decide, publish nothing

The new version is judged on the corrections themselves, each left out in turn; the training
artists' validation rigs only guard against collapse. Exit codes: 0 published, unchanged or dry run,
1 no usable correction, 2 bad input, 3 refused (the message says why and what to try).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli._types import bounded

NAME = "adapt"
HELP = "learn a studio's style from its corrected characters (settings refit and head training)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.inference.model_store import DEFAULT_FOLDER

    parser.add_argument("--corrections", type=Path, required=True,
                        help="folder of corrected characters (.npz: the add-on's export, or painted rigs)")
    parser.add_argument("--data", type=Path, default=None,
                        help="rigs folder: val/ guards against collapse, train/ is replayed while the head trains")
    parser.add_argument("--models", type=Path, default=DEFAULT_FOLDER, help=f"models folder (default {DEFAULT_FOLDER})")
    parser.add_argument("--model", type=Path, default=None, help="base ONNX model (default: the model in use)")
    parser.add_argument("--base", type=Path, default=None, help="its checkpoint (default: the one of the model in use)")
    parser.add_argument("--out", type=Path, default=Path("runs/adapt"), help="report folder (default runs/adapt)")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                        help="with two corrections or more, also train the generator's scoring head (default; "
                             "--no-train: the settings refit alone)")
    parser.add_argument("--steps", type=bounded(int, 1, 1000, "steps"), default=40,
                        help="most head training steps the leave-one-out stop rule tries (default 40)")
    parser.add_argument("--collapse", type=bounded(float, 0.0, 10.0, "a share"), default=0.5,
                        help="refuse when the validation L1 rises by more than this share (default 0.5)")
    parser.add_argument("--guard-rigs", type=bounded(int, 0, what="rigs"), default=6,
                        help="validation rigs scored by the collapse guard (0 = none; default 6)")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"),
                        help="feature cache of the validation rigs (default runs/cache, shared with training)")
    parser.add_argument("--changed-threshold", type=bounded(float, 0.0, 2.0, "an L1 distance"), default=0.05)
    parser.add_argument("--dry-run", action="store_true", help="decide, publish nothing")
    parser.add_argument("--no-activate", action="store_true", help="publish the version but keep the model in use")


def run(args: argparse.Namespace) -> int:
    from backend.io.outputs import check_output_folder
    from backend.rig import RigError
    from backend.training.corrections import read_corrections

    if args.data is not None and not (args.data / "val").is_dir() and args.guard_rigs > 0:
        raise RigError(f"{args.data}: no val/ folder for the collapse guard (use --guard-rigs 0 to skip it)")
    if args.train and args.data is not None and not (args.data / "train").is_dir():
        raise RigError(f"{args.data}: no train/ folder to replay while training the head (--no-train to skip it)")
    model = args.model or args.models / "autoskin.onnx"
    if not model.is_file():
        raise RigError(f"{model}: no such model file")
    out = check_output_folder(args.out, [args.corrections], what="report folder")
    corrections = read_corrections(args.corrections, args.changed_threshold)
    for line in corrections.report_lines():
        print(line)
    if not corrections.accepted:
        print(f"error: {args.corrections}: no usable correction file")
        return 1
    from backend.training.adapt_command import REFUSED, AdaptOptions, run_adapt

    options = AdaptOptions(train=args.train, steps=args.steps, collapse=args.collapse, guard_rigs=args.guard_rigs,
                           activate=not args.no_activate, dry_run=args.dry_run)
    result = run_adapt(corrections.accepted, args.models, out, args.data, options, model=args.model, base=args.base,
                       cache=args.cache_dir)
    print(result.message)
    return REFUSED if result.decision == "refused" else 0
