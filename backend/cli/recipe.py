"""Train the shipped model from scratch with one config and one command (docs/model.md).

  python -m backend recipe --config configs/recipe.toml --data ../shared/data --out runs/recipe \\
      --model-version 3.0 --cv runs/cv/recipe --install models

Steps (each skipped when done; a killed training resumes, so run the same command again):
1. the data view: rigs/train + every styles domain in ``train``, rigs/val to stop early, rigs/test;
2. the unlabelled pool (``data.synth_unlabeled`` synthetic creatures);
3. training with the config (``OUT/run``);
4. export with the config's run-time settings (``[runtime]``, chosen by ``cv``) -> ``OUT/autoskin.onnx``;
5. evaluation on rigs/test against the heat and geodesic modes and Blender's bone heat (holes filled);
6. the model card (``OUT/MODEL_CARD.md``), with the cross-validation report of ``--cv`` and the
   licence classes of the training data; ``--install DIR`` copies model, checkpoint and card there.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from backend.cli._recipe_args import add_source_arguments

NAME = "recipe"
HELP = "train, export, evaluate and card the shipped model from scratch (one config, one command)"

TEST_METHODS = ("heat:skip_helpers=1", "geodesic", "boneheat:fill")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--model-version", default=None, help="version string stored in the model")
    p.add_argument("--cv", default=None, metavar="DIR",
                   help="the config's cross-validation (python -m backend cv) for the card")
    p.add_argument("--notes", default=None, metavar="MD", help="known weaknesses (Markdown) for the card")
    p.add_argument("--install", default=None, metavar="DIR",
                   help="copy autoskin.onnx, autoskin.pth and the card into DIR (e.g. models)")


def recipe_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (for the card)."""
    parts = ["python -m backend recipe", "--config", args.config, "--data", args.data, "--out", args.out]
    for flag, value in (("--folds", args.folds), ("--model-version", args.model_version), ("--cv", args.cv),
                        ("--notes", args.notes), ("--install", args.install)):
        if value:
            parts += [flag, value]
    for item in args.set:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def run(args: argparse.Namespace) -> int:
    from backend.cli.model_card import run as write_card
    from backend.training.config import load_config
    from backend.training.folds import load_folds
    from backend.training.steps import ensure_evaluated, ensure_trained, ensure_view, export_model, say, with_unlabeled

    t0 = time.time()
    cfg = load_config(args.config, args.set)
    cfg.data.cache_dir = args.cache_dir
    folds = load_folds(args.folds)
    out = Path(args.out)
    if args.cv and not (Path(args.cv) / "cv_headline.md").is_file():
        print(f"error: --cv {args.cv}: no cv_headline.md there (run python -m backend cv ... --report first)",
              file=sys.stderr)
        return 2
    view = ensure_view(args.data, folds, None, out / "view")
    best = ensure_trained(with_unlabeled(cfg, Path(args.cache_dir)), view, out / "run")
    model = export_model(best, out / "autoskin.onnx", cfg.runtime, model_version=args.model_version,
                         results=out / "eval_test" / "results.jsonl")
    ensure_evaluated(view / "test", [f"model:{model}", *TEST_METHODS], out / "eval_test",
                     manifest=view / "manifest.jsonl")
    command = recipe_command(args)
    card = argparse.Namespace(model=str(model), run=[str(out / "run")], eval=[f"test={out / 'eval_test'}"],
                              ablation=[str(Path(args.cv) / "cv_headline.md")] if args.cv else [], notes=args.notes,
                              train_command=[command], earlier_card=None, data_view=str(view / "view.json"),
                              blend=None, out=str(out))
    write_card(card)
    if args.install:
        from backend.inference.model_store import CURRENT_CHECKPOINT, CURRENT_NAME, copy_atomic

        dest = Path(args.install)
        for src, name in ((best, CURRENT_CHECKPOINT), (out / "MODEL_CARD.md", "MODEL_CARD.md"),
                          (out / "model_card.json", "model_card.json"), (model, CURRENT_NAME)):
            copy_atomic(src, dest / name)  # the ONNX last: the model in use changes in one step
        say(f"[install] {dest}: autoskin.onnx, autoskin.pth, MODEL_CARD.md, model_card.json")
    say(f"[recipe] done in {(time.time() - t0) / 60:.1f} min (this call)")
    return 0
