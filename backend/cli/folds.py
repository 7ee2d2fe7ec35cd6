"""Fix leave-domain-out folds over the styles data, once, in a JSON file to commit.

  python -m backend folds ../shared/data --folds 5 --out configs/folds.json

Domains (``styles/manifest.jsonl``'s ``domain``) are dealt into folds balanced by rig count
(backend/training/folds.py); the file also lists each fold's rig count and kinds. Refuses to
overwrite an existing file unless --force: the folds are fixed once, and every cross-validated
figure refers to them.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

NAME = "folds"
HELP = "fix leave-domain-out folds over the styles domains (a JSON file to commit)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="data root holding styles/manifest.jsonl")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    from backend.io.atomic import atomic_path
    from backend.training.folds import make_folds, read_manifest, rig_domain

    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"error: {out} exists; the folds are fixed once (--force to replace them)", file=sys.stderr)
        return 2
    rows = read_manifest(Path(args.data) / "styles" / "manifest.jsonl")
    sizes = Counter(rig_domain(r) for r in rows)
    folds = make_folds(dict(sizes), args.folds)
    about = []
    for fold in folds:
        kinds = Counter(r.get("kind", "other") for r in rows if rig_domain(r) in fold)
        about.append({"rigs": sum(sizes[d] for d in fold), "kinds": dict(sorted(kinds.items()))})
    doc = {"folds": folds, "about": about,
           "made_by": f"python -m backend folds DATA --folds {args.folds} --out {out}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1) + "\n")
    for i, (fold, a) in enumerate(zip(folds, about)):
        print(f"fold {i}: {a['rigs']} rigs, {', '.join(fold)}")
    return 0
