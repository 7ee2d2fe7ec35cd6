"""Combine generator checkpoints into one ensemble (the mean of their predictions).

Example (two generators trained with other recipes; export the result as usual)::

    python -m backend ensemble runs/grow_dc0.5_cont/best_generator.pt \\
        runs/grow_dc0.5_s32/best_generator.pt --out runs/ens/best_generator.pt

Unlike ``average`` (one network whose parameters are the mean), an ensemble runs every member,
so it costs their summed time, and its members may differ in architecture and training.
"""
from __future__ import annotations

import argparse

from backend.cli.average import _weights

NAME = "ensemble"
HELP = "combine generator checkpoints into one ensemble (mean of their predictions)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="generator checkpoints (.pt/.pth), at least two")
    p.add_argument("--out", required=True, help="output generator checkpoint")
    p.add_argument("--weights", type=_weights, default=None,
                   help="comma-separated positive weights, one per checkpoint (default: equal)")


def run(args: argparse.Namespace) -> int:
    from backend.training.ensemble import ensemble_generators

    out = ensemble_generators(args.checkpoints, args.out, args.weights)
    print(f"wrote {out}: an ensemble of {len(args.checkpoints)} generators")
    return 0
