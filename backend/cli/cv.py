"""Leave-domain-out cross-validation of one training configuration (docs/crossval.md).

For every fold of the folds file (configs/folds.json): a data view that trains on rigs/train +
the other folds' styles domains and stops early on rigs/val; training with the config; export
with the config's run-time settings (and the network alone, ``prior_blend`` 1); evaluation on the
held-out domains. The report compares the candidate with the model-free modes and Blender's bone
heat, scored once on every styles rig (``--baselines``), on the same rigs:

  python -m backend cv --config configs/recipe.toml --data ../shared/data --out runs/cv/recipe \\
      --set stages.stage1_epochs=8 --baselines runs/cv/baselines_styles
  python -m backend cv ... --fold 0 --fold 2     # some folds only (two processes can share the work)
  python -m backend cv ... --report              # only the report of what is done

Writes OUT/fold<N>/ (run, models, eval) and OUT/cv.md + OUT/cv.json (+ OUT/cv_headline.md, the
first table alone, which the recipe's model card quotes). Every step is skipped when
done and a killed training resumes: run the same command again to continue.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend.cli._recipe_args import add_source_arguments

NAME = "cv"
HELP = "leave-domain-out cross-validation of a training config over the styles domains"

#: the model-free modes and Blender's bone heat, scored on every styles rig by --baselines
BASELINE_METHODS = ("heat:skip_helpers=1", "geodesic", "boneheat:fill")
BASELINE_LABELS = {"heat:skip_helpers=1": "heat mode", "geodesic": "geodesic mode",
                   "boneheat:fill": "bone heat, holes filled"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--fold", action="append", type=int, default=[], help="run only this fold; repeatable (default all)")
    p.add_argument("--baselines", default=None, metavar="DIR",
                   help="evaluation folder of the baselines on every styles rig (made there when missing)")
    p.add_argument("--reference", action="append", default=[], metavar="MODEL.onnx",
                   help="also score this model on every styles rig (in the --baselines folder); repeatable")
    p.add_argument("--runtime", action="append", default=[], metavar="NAME:key=value,...",
                   help="also score each fold's generator with these run-time settings (prior_blend, sharpen, "
                        "diffuse, enclosing_pieces; e.g. sharp2:sharpen=2,diffuse=0.5), reported as rt-NAME; "
                        "repeatable")
    p.add_argument("--unlabeled-heldout", action="store_true",
                   help="the held-out domains' meshes join the unlabelled pool without their weights "
                        "(what a studio has: its characters, unpainted)")
    p.add_argument("--stage-models", action="store_true",
                   help="also score the best generator of the supervised stage 1 (by rigs/val) and the generator "
                        "as training ended (after the semi-supervised stage 2) with the config's run-time settings, "
                        "reported as stage1 / final: the semi-supervised stage judged on held-out domains, not "
                        "on rigs/val")
    p.add_argument("--report", action="store_true", help="only write the report of the folds done so far")


def baseline_methods(references: list[str]) -> list[str]:
    return list(BASELINE_METHODS) + [f"model:{r}" for r in references]


def run(args: argparse.Namespace) -> int:
    from backend.training.config import RuntimeConfig, load_config
    from backend.training.folds import load_folds
    from backend.training.steps import (ensure_evaluated, ensure_trained, ensure_view, export_model, final_generator,
                                        parse_runtime, with_unlabeled)

    cfg = load_config(args.config, args.set)
    runtimes = [parse_runtime(s) for s in args.runtime]
    cfg.data.cache_dir = args.cache_dir
    folds = load_folds(args.folds)
    bad = [f for f in args.fold if not 0 <= f < len(folds)]
    if bad:
        print(f"error: --fold {bad[0]}: the folds file has folds 0..{len(folds) - 1}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv_config.json").write_text(json.dumps({"config": args.config, "set": args.set, "folds": args.folds,
                                                    "resolved": cfg.to_dict()}, indent=1))
    styles = Path(args.data) / "styles"
    if args.baselines and not args.report:
        ensure_evaluated(styles, baseline_methods(args.reference), Path(args.baselines))
    for f in ([] if args.report else (args.fold or range(len(folds)))):
        fold_dir = out / f"fold{f}"
        view = ensure_view(args.data, folds, f, out / "views" / f"fold{f}")
        extra = [view / "heldout"] if args.unlabeled_heldout else []
        best = ensure_trained(with_unlabeled(cfg, Path(args.cache_dir), extra), view, fold_dir)
        res = fold_dir / "eval" / "results.jsonl"  # a model exported again is scored again
        models = [export_model(best, fold_dir / "cv_candidate.onnx", cfg.runtime, f"cv-fold{f}", res),
                  export_model(best, fold_dir / "cv_network.onnx", RuntimeConfig(), f"cv-fold{f}", res)]
        models += [export_model(best, fold_dir / f"cv_rt-{name}.onnx", rt, f"cv-fold{f}", res)
                   for name, rt in runtimes]
        if args.stage_models:
            stage1, final = fold_dir / "best_stage1_generator.pt", final_generator(fold_dir)
            if stage1.is_file():
                models.append(export_model(stage1, fold_dir / "cv_stage1.onnx", cfg.runtime, f"cv-fold{f}", res))
            if final is not None:
                models.append(export_model(final, fold_dir / "cv_final.onnx", cfg.runtime, f"cv-fold{f}", res))
        ensure_evaluated(view / "heldout", [f"model:{m}" for m in models], fold_dir / "eval",
                         manifest=view / "manifest.jsonl")
    return write_report(out, folds, args)


def write_report(out: Path, folds: list[list[str]], args: argparse.Namespace) -> int:
    """OUT/cv.md and OUT/cv.json from the folds evaluated so far and the baselines on their rigs."""
    from backend.evaluation.crossval import cv_markdown, cv_scores, read_rows
    from backend.training.folds import read_manifest, rig_domain

    rows: list[dict] = []
    done = []
    for f in range(len(folds)):
        res = out / f"fold{f}" / "eval" / "results.jsonl"
        if res.is_file():
            for r in read_rows(res):
                r["method"] = r["method"].replace("model:cv_", "model:")  # one label for every fold's model
                rows.append(r)
            done.append(f)
    if not done:
        print("no fold evaluated yet", file=sys.stderr)
        return 1
    scored = {r["rig"] for r in rows}
    if args.baselines and (Path(args.baselines) / "results.jsonl").is_file():
        rows += [r for r in read_rows(Path(args.baselines) / "results.jsonl") if r["rig"] in scored]
    domains = {r["file"]: rig_domain(r) for r in read_manifest(Path(args.data) / "styles" / "manifest.jsonl")}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    scores = cv_scores(rows, domains, methods)
    labels = {"model:candidate": "candidate (config's run-time settings)", "model:network": "network alone",
              "model:stage1": "stage 1 best (supervised)", "model:final": "end of training (after stage 2)",
              **BASELINE_LABELS}
    head = (f"# Cross-validation over held-out styles domains\n\nFolds done: {done} of {len(folds)} "
            f"({args.folds}); config {args.config} {' '.join('--set ' + s for s in args.set)}\n\n")
    (out / "cv.md").write_text(head + cv_markdown(scores, labels))
    (out / "cv_headline.md").write_text(head + cv_markdown(scores, labels, headline_only=True)
                                        + f"\nPer domain and per kind: {out / 'cv.md'} (docs/crossval.md).\n")
    (out / "cv.json").write_text(json.dumps({"folds_done": done, "scores": scores}, indent=1))
    print(head + cv_markdown(scores, labels))
    return 0
