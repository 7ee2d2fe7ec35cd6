"""Average the parameters of generator checkpoints trained from one starting point (a "model soup").

Example (model 1.5: model 1.4's generator and two warm-started continuations of it)::

    python -m backend average models/autoskin.pth runs/cont_s1/best_generator.pt \\
        runs/cont_s3/best_generator.pt --out runs/soup/best_generator.pt

The members must share architecture and features (refused otherwise); export the result as usual.
"""
from __future__ import annotations

import argparse

NAME = "average"
HELP = "average generator checkpoints of one architecture (model soup)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="generator checkpoints (.pt/.pth), at least two")
    p.add_argument("--out", required=True, help="output generator checkpoint")


def run(args: argparse.Namespace) -> int:
    from backend.training.average import average_generators

    out = average_generators(args.checkpoints, args.out)
    print(f"wrote {out}: the mean of {len(args.checkpoints)} generators")
    return 0
