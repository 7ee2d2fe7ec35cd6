"""Average the parameters of generator checkpoints trained from one starting point (a "model soup").

Example (a generator and two warm-started continuations of it)::

    python -m backend average models/autoskin.pth runs/cont_s1/best_generator.pt \\
        runs/cont_s3/best_generator.pt --out runs/soup/best_generator.pt

The members must share architecture and features (refused otherwise), except that a generator may
be averaged with grown warm starts of it (``--set model.pair_attention=...``): it counts as the grown
one with the new layers at their identity start. ``--weights`` gives a weighted mean, e.g. halfway
between a generator and its grown warm start::

    python -m backend average runs/deformsq_w1.0_s23/best_generator.pt runs/grow/best_generator.pt \
        --weights 0.5,0.5 --out runs/wise/best_generator.pt

Export the result as usual.
"""
from __future__ import annotations

import argparse

NAME = "average"
HELP = "average generator checkpoints of one architecture (model soup)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_combine_arguments(p, "non-negative")


def add_combine_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    """The arguments of a command that combines generator checkpoints (``average``, ``ensemble``);
    ``kind`` says which weights it accepts ("non-negative", "positive")."""
    p.add_argument("checkpoints", nargs="+", help="generator checkpoints (.pt/.pth), at least two")
    p.add_argument("--out", required=True, help="output generator checkpoint")
    p.add_argument("--weights", type=_weights, default=None,
                   help=f"comma-separated {kind} weights, one per checkpoint (default: equal)")


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights must be comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from backend.io.outputs import check_output_file
    from backend.training.average import average_generators

    check_output_file(args.out, args.checkpoints)
    out = average_generators(args.checkpoints, args.out, args.weights)
    kind = "weighted mean" if args.weights else "mean"
    print(f"wrote {out}: the {kind} of {len(args.checkpoints)} generators")
    return 0
