"""Learn from artists' corrections: fine-tune the model in use on the files the add-on's
"Export Corrected Weights" wrote, check it against the old one, and publish a new model version.

Examples:
  python -m backend finetune --corrections ~/corrections --data ../shared/data/rigs --out runs/ft1
  python -m backend finetune ... --epochs 30 --replay-share 0.5 --changed-weight 5 --tolerance 0.02
  python -m backend finetune ... --resume          # continue a killed run (same result)
  python -m backend finetune ... --holdout-eval    # also score each correction held out in turn
  python -m backend finetune --list                # the versions in the models folder
  python -m backend finetune --activate 2          # put version 2 back in use

Exit codes: 0 published (or listed / activated / dry run), 1 no usable correction, 2 bad input,
3 refused (validation got worse by more than --tolerance), 130 interrupted.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli._types import bounded

NAME = "finetune"
HELP = "fine-tune the model on artists' corrected weights and publish a new version"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.inference.model_store import DEFAULT_FOLDER

    parser.add_argument("--corrections", type=Path, default=None, help="folder of exported corrections (.npz)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with train/ (replay) and val/ (validation) rig .npz")
    parser.add_argument("--base", type=Path, default=None,
                        help="generator checkpoint to start from (default: the one that made the model in use)")
    parser.add_argument("--models", type=Path, default=DEFAULT_FOLDER, help=f"models folder (default {DEFAULT_FOLDER})")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/finetune)")
    parser.add_argument("--config", type=Path, default=None, help="TOML config (optim/loss/data/run sections used)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable), e.g. --set optim.lr_g=5e-5")
    parser.add_argument("--epochs", type=bounded(int, 1, what="passes, a whole number"), default=20,
                        help="passes over the corrections, >= 1 (default 20)")
    parser.add_argument("--replay-share", type=bounded(float, 0.0, 1.0, "a share"), default=0.5,
                        help="fraction of the steps spent on the original train split, 0..1 (default 0.5)")
    parser.add_argument("--changed-weight", type=bounded(float, 0.0, what="a loss weight"), default=5.0,
                        help="loss weight of the vertices the artist changed, >= 0 (default 5)")
    parser.add_argument("--changed-threshold", type=bounded(float, 0.0, 2.0, "an L1 distance"), default=0.05,
                        help="a vertex is changed when L1(corrected - predicted row) exceeds this, 0..2 "
                             "(default 0.05)")
    parser.add_argument("--tolerance", type=bounded(float, 0.0, 2.0, "an L1 rise"), default=0.02,
                        help="refuse when the validation per-vertex L1 rises by more than this, 0..2 (default 0.02)")
    parser.add_argument("--holdout-eval", action="store_true",
                        help="also fine-tune once per held-out fold (leave-one-out up to 5 corrections)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    parser.add_argument("--dry-run", action="store_true", help="train and evaluate, publish nothing")
    parser.add_argument("--no-activate", action="store_true", help="publish the version but keep the model in use")
    parser.add_argument("--export-method", choices=("auto", "dynamo", "torchscript"), default="auto")
    parser.add_argument("--list", action="store_true", help="list the model versions and exit")
    parser.add_argument("--activate", type=int, default=None, metavar="N",
                        help="make version N the model in use and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def list_versions(folder: Path) -> int:
    from backend.inference import model_store

    models = model_store.list_models(folder)
    cur = model_store.current_model(folder)
    if not models:
        print(f"{folder}: no model versions")
    for m in models:
        mark = "*" if cur is not None and cur.version == m.version else " "
        print(f"{mark} {m.label}  {m.onnx}")
    return 0


def run(args: argparse.Namespace) -> int:
    from backend.inference import model_store
    from backend.rig import RigError

    if args.list:
        return list_versions(args.models)
    if args.activate is not None:
        m = model_store.activate(args.models, args.activate)
        print(f"{m.name} is now in use: {args.models / model_store.CURRENT_NAME}")
        return 0
    if args.corrections is None or args.data is None:
        raise RigError("finetune needs --corrections DIR and --data DIR (with train/ and val/)")

    from backend.io.outputs import check_output_folder
    from backend.training.config import load_config
    from backend.training.corrections import read_corrections
    from backend.training.finetune import REFUSED, FinetuneOptions, run_finetune

    cfg = load_config(args.config, args.overrides)
    out = check_output_folder(args.out or Path("runs") / "finetune", [args.corrections, args.data],
                              what="run folder")
    corrections = read_corrections(args.corrections, args.changed_threshold)
    for line in corrections.report_lines():
        print(line)
    if not corrections.accepted:
        print(f"error: {args.corrections}: no usable correction file")
        return 1
    options = FinetuneOptions(epochs=args.epochs, replay_share=args.replay_share, changed_weight=args.changed_weight,
                              changed_threshold=args.changed_threshold, tolerance=args.tolerance,
                              holdout_eval=args.holdout_eval, export_method=args.export_method,
                              activate=not args.no_activate)
    result = run_finetune(cfg, corrections, args.data, out, args.models, base=args.base, options=options,
                          resume=args.resume, dry_run=args.dry_run, progress=not args.no_progress)
    print(result.message)
    if result.decision == "refused":
        return REFUSED
    return 0
