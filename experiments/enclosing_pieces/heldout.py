"""What both scoring scripts share: their options and the held-out rigs of a fold not scored yet."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def fold_options() -> argparse.Namespace:
    """--fold N, --cv DIR (the recipe's cross-validation), --out DIR (one fold<N>.jsonl per fold)."""
    p = argparse.ArgumentParser()
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--cv", default="runs/cv/recipe")
    p.add_argument("--out", required=True)
    return p.parse_args()


def pending_rigs(a: argparse.Namespace) -> tuple[Path, list[Path]]:
    """(OUT/fold<N>.jsonl, the fold's held-out rig files without a line in it yet): the scripts resume."""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fold{a.fold}.jsonl"
    done = {json.loads(line)["rig"] for line in path.open()} if path.is_file() else set()
    files = sorted((Path(a.cv) / "views" / f"fold{a.fold}" / "heldout").glob("*.npz"))
    return path, [f for f in files if f.name not in done]


def append_row(path: Path, row: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
