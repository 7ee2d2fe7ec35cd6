"""Adaptation benchmark: adapt a base model to k characters of each outside domain and score the
domain's other characters against the base model and the heat mode (docs/adaptation.md).

Examples:
  python -m backend adapt-bench --styles ../shared/data/styles --out runs/adapt_bench
  python -m backend adapt-bench --domains elceejo_mobs,kaykit --k 1,3 --draws 1 --methods style
  python -m backend adapt-bench --model runs/new/model.onnx --base runs/new/best_generator.pt --methods style,train
  python -m backend adapt-bench --cv runs/cv/recipe --cv-model cv_rt-s3d05.onnx   # each domain's base: the
                                                        # cross-validation model that never saw it

Writes OUT/results.jsonl (one row per domain, draw and method, appended as they finish) and
OUT/summary.md (the table). Exit codes: 0 done, 2 bad input.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli._types import bounded

NAME = "adapt-bench"
HELP = "benchmark how well a model adapts to a studio's style from k corrected characters"


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"every k must be >= 1, got {text!r}")
    return vals


def _methods(text: str) -> list[str]:
    from backend.evaluation.adapt_bench import METHODS

    vals = [x.strip() for x in text.split(",") if x.strip()]
    bad = [v for v in vals if v not in METHODS]
    if not vals or bad:
        raise argparse.ArgumentTypeError(f"methods must be among {', '.join(METHODS)}, got {text!r}")
    return vals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--styles", type=Path, default=Path("../shared/data/styles"),
                        help="folder of rigs with manifest.jsonl naming each rig's domain")
    parser.add_argument("--model", type=Path, default=None, help="base ONNX model (default: the model in use)")
    parser.add_argument("--base", type=Path, default=None,
                        help="its generator checkpoint, for --methods train (default: the one beside the model in use)")
    parser.add_argument("--cv", type=Path, default=None, metavar="DIR",
                        help="a `cv` output folder: each domain's base is the model of the fold that held it out "
                             "(DIR/fold<N>/--cv-model, checkpoint DIR/fold<N>/best_generator.pt); replaces --model")
    parser.add_argument("--cv-model", default="cv_candidate.onnx", metavar="FILE",
                        help="which exported model of each fold (default cv_candidate.onnx)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/rigs"),
                        help="rigs folder whose train/ the train method replays")
    parser.add_argument("--methods", type=_methods, default=["style"], help="comma list of: style, train")
    parser.add_argument("--k", dest="ks", type=_int_list, default=[1, 3], help="corrections per draw (default 1,3)")
    parser.add_argument("--draws", type=bounded(int, 1, what="draws"), default=2, help="draws per k (default 2)")
    parser.add_argument("--domains", type=lambda s: [x for x in s.split(",") if x], default=None,
                        help="comma list of domains (default: every domain with --min-rigs rigs)")
    parser.add_argument("--min-rigs", type=bounded(int, 2, what="rigs"), default=4)
    parser.add_argument("--max-tests", type=bounded(int, 1, what="rigs"), default=8,
                        help="score at most this many of a draw's other rigs (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=bounded(int, 1, what="steps"), default=None,
                        help="train method: most head training steps the leave-one-out stop rule tries (default 40)")
    parser.add_argument("--lr", type=bounded(float, 0.0, 1.0, "a learning rate"), default=None,
                        help="train method: learning rate of the head (default: backend.training.adapt)")
    parser.add_argument("--replay-every", type=bounded(int, 0, what="steps"), default=None,
                        help="train method: one replay step after every N correction steps (0 = no replay)")
    parser.add_argument("--out", type=Path, default=Path("runs/adapt_bench"))


def run(args: argparse.Namespace) -> int:
    from backend.evaluation.adapt_bench import make_draws, read_domains
    from backend.io.outputs import check_output_folder
    from backend.rig import RigError

    domains = read_domains(args.styles, args.min_rigs, args.domains)
    if not domains:
        raise RigError(f"{args.styles}: no domain has {args.min_rigs} rigs or more")
    plan = {d: make_draws([g for _, g in v], args.ks, args.draws, args.seed) for d, v in domains.items()}
    if not any(plan.values()):
        raise RigError(f"no draw leaves a rig to score with k = {args.ks}; lower --k")
    if args.cv is not None:
        if args.model is not None or args.base is not None:
            raise RigError("--cv gives each domain its fold's model: leave out --model and --base")
        from backend.evaluation.adapt_run import cv_models

        missing = sorted({str(m) for m in (cv_models(args.cv, args.cv_model, d)[0] for d in plan) if not m.is_file()})
        if missing:
            raise RigError(f"--cv {args.cv}: no fold model {missing[0]} (is that fold's cv run done?)")
    out = check_output_folder(args.out, [args.styles], what="benchmark folder")
    from backend.evaluation.adapt_run import run_bench

    return run_bench(args, domains, plan, out)
