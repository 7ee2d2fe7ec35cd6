"""Train the generator with the staged SS-WGAN (supervised pre-training, joint adversarial
training with D_s / D_u, optional fine-tune).

Example:
  python -m backend train --config configs/default.toml --data ../shared/data/rigs --out runs/NAME
  python -m backend train ... --set optim.lr_g=2e-4 --set stages.stage2_epochs=50
  python -m backend train ... --resume            # continue a killed run (same result)
  python -m backend train ... --init runs/old/best_generator.pt   # warm start from a trained generator
  python -m torch.distributed.run --nproc_per_node 2 -m backend train ...   # data-parallel (gloo on CPU)

SIGTERM (a scheduler's stop) saves state.pt at the end of the current step and exits with 143;
state.pt is also written every run.checkpoint_every_minutes (10) mid-epoch.

The run folder gets state.pt (resumable), best_generator.pt, log.jsonl, tb/ (TensorBoard),
plots/*.png, config.json and summary.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "train"
STOPPED = 143  # exit status after SIGTERM (128 + 15): the state is saved, resume continues
HELP = "train the skinning generator (SS-WGAN)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config (default: built-in defaults)")
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ subfolders of rig .npz")
    parser.add_argument("--out", type=Path, required=True, help="run folder (runs/NAME)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable), e.g. --set optim.lr_g=2e-4")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    parser.add_argument("--init", type=Path, default=None,
                        help="warm start: the generator starts from this checkpoint's weights (same architecture)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: OUT/../cache)")
    parser.add_argument("--no-adversarial", action="store_true", help="ablation: no critics / adversarial terms")
    parser.add_argument("--no-consistency", action="store_true", help="ablation: no consistency loss")
    parser.add_argument("--no-physical", action="store_true", help="ablation: no smoothness / locality loss")
    parser.add_argument("--labeled-fraction", type=float, default=None,
                        help="keep the weights of this fraction of the train split; the rest is unlabelled")
    parser.add_argument("--unlabeled-dir", type=Path, action="append", default=[],
                        help="folder of rig .npz used without weights (repeatable), e.g. synthetic creatures")
    parser.add_argument("--benchmark", action="store_true",
                        help="time one epoch of stage-1 and stage-2 steps on the train split and exit")
    parser.add_argument("--benchmark-batches", type=int, default=0,
                        help="with --benchmark: time only this many batches and extrapolate to the epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    from backend.training.config import load_config

    overrides = list(args.overrides)
    if args.cache_dir is not None:
        overrides.append(f'data.cache_dir="{args.cache_dir}"')
    if args.init is not None:
        overrides.append(f'run.init_generator="{args.init}"')
    if args.no_adversarial:
        overrides.append("ablation.adversarial=false")
    if args.no_consistency:
        overrides.append("ablation.consistency=false")
    if args.no_physical:
        overrides.append("ablation.physical=false")
    if args.labeled_fraction is not None:
        overrides.append(f"data.labeled_fraction={float(args.labeled_fraction)}")
    cfg = load_config(args.config, overrides)
    if args.unlabeled_dir:
        cfg.data.unlabeled_dirs = list(cfg.data.unlabeled_dirs) + [str(p) for p in args.unlabeled_dir]
    return cfg


def run(args: argparse.Namespace) -> int:
    from backend.io.outputs import check_output_folder
    from backend.training.trainer import Trainer

    cfg = build_config(args)
    check_output_folder(args.out, [args.data], what="run folder")
    trainer = Trainer(cfg, args.data, args.out, resume=args.resume, progress=not args.no_progress)
    try:
        if args.benchmark:
            from backend.training.benchmark import benchmark

            result = benchmark(trainer, args.benchmark_batches)
            if trainer.main:
                print(json.dumps(result, indent=1))
            return 0
        summary = trainer.fit()
        if trainer.main:
            print(json.dumps(summary, indent=1, default=str))
        if summary["stopped"]:
            if trainer.main:
                print(f"stopped by a signal after step {summary['steps']}; the state is saved: continue with "
                      f"--resume", file=sys.stderr)
            return STOPPED
            best = Path(args.out) / "best_generator.pt"
            if best.is_file():
                print(f"best generator: {best}")
        return 0
    finally:
        from backend.training.distributed import teardown

        teardown(trainer.dist)
