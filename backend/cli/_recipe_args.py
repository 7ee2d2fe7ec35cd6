"""Arguments shared by ``recipe`` and ``cv``: which config trains on which data, with which folds."""
from __future__ import annotations

import argparse


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """--config, --data, --folds, --out, --set, --cache-dir."""
    p.add_argument("--config", required=True, help="training config (TOML), e.g. configs/recipe.toml")
    p.add_argument("--data", required=True, help="data root holding manifest.jsonl, rigs/ and styles/")
    p.add_argument("--folds", default="configs/folds.json",
                   help="folds file listing every styles domain (default configs/folds.json)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override; repeatable")
    p.add_argument("--cache-dir", default="runs/cache", help="feature cache, shared between runs (default runs/cache)")
