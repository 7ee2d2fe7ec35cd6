"""Combine generator checkpoints into one ensemble (the mean of their predictions).

Example (two generators trained with other recipes; export the result as usual)::

    python -m backend ensemble runs/grow_dc0.5_cont/best_generator.pt \\
        runs/grow_dc0.5_s32/best_generator.pt --out runs/ens/best_generator.pt

Unlike ``average`` (one network whose parameters are the mean), an ensemble runs every member,
so it costs their summed time, and its members may differ in architecture and training.
"""
from __future__ import annotations

import argparse

from backend.cli.average import add_combine_arguments

NAME = "ensemble"
HELP = "combine generator checkpoints into one ensemble (mean of their predictions)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_combine_arguments(p, "positive")


def run(args: argparse.Namespace) -> int:
    from backend.training.ensemble import ensemble_generators

    out = ensemble_generators(args.checkpoints, args.out, args.weights)
    print(f"wrote {out}: an ensemble of {len(args.checkpoints)} generators")
    return 0
