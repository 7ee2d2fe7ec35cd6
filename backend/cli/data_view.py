"""Make a data view: folders of links into the rig data with chosen asset groups held out.

Example (the shipped model's view: MakeHuman and the mech pack are the out-of-style check
that training never sees)::

    python -m backend data-view ../shared/data --out runs/views/shipped \\
        --holdout-group makehuman_basemesh --holdout-group q_mech_pack

writes ``OUT/train`` (train split minus the held-out groups), ``OUT/val``, ``OUT/test`` and
``OUT/out_of_style`` (the held-out groups), each a folder of symbolic links, plus ``OUT/view.json``
and a copy of ``manifest.jsonl`` (so ``evaluate`` finds each rig's kind).

With ``--folds FILE --holdout-fold N`` it writes one leave-domain-out fold's view instead
(backend/training/folds.py): ``train`` = rigs/train + the styles domains of the other folds,
``val`` = rigs/val, ``test`` = rigs/test, ``heldout`` = fold N's domains; ``--holdout-fold none``
puts every styles rig in ``train`` (the shipped recipe's view)::

    python -m backend data-view ../shared/data --folds configs/folds.json --holdout-fold 0 --out runs/views/cv0
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

NAME = "data-view"
HELP = "folders of links into the rig data with asset groups held out (out-of-style check)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="data root holding manifest.jsonl and rigs/{train,val,test}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--holdout-group", action="append", default=[],
                   help="manifest group (or group prefix) held out of train into out_of_style; repeatable")
    p.add_argument("--folds", default=None, help="folds JSON (python -m backend folds): write a fold's view")
    p.add_argument("--holdout-fold", default=None, metavar="N|none",
                   help="with --folds: the fold held out (0-based), or 'none' to train on every styles rig")


def plan_view(manifest_rows: list[dict], holdout: list[str]) -> dict[str, list[str]]:
    """Split names: {'train': [...], 'val': [...], 'test': [...], 'out_of_style': [...]} (file names)."""
    view: dict[str, list[str]] = {"train": [], "val": [], "test": [], "out_of_style": []}
    for row in manifest_rows:
        split = row.get("split")
        if split not in ("train", "val", "test"):
            continue
        held = split == "train" and any(str(row.get("group", "")).startswith(h) for h in holdout)
        view["out_of_style" if held else split].append(row["file"])
    return view


def run_folds(args: argparse.Namespace) -> int:
    from backend.training.folds import load_folds, write_fold_view

    if args.holdout_group:
        print("error: --holdout-group and --folds exclude each other", file=sys.stderr)
        return 2
    folds = load_folds(args.folds)
    raw = str(args.holdout_fold if args.holdout_fold is not None else "")
    if raw == "none":
        holdout = None
    elif raw.isdigit():
        holdout = int(raw)
    else:
        print(f"error: --holdout-fold must be a fold number or 'none', got {raw or 'nothing'}", file=sys.stderr)
        return 2
    print(json.dumps(write_fold_view(args.data, args.out, folds, holdout)))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.folds:
        return run_folds(args)
    if args.holdout_fold is not None:
        print("error: --holdout-fold needs --folds", file=sys.stderr)
        return 2
    data = Path(args.data).resolve()
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    by_file = {r["file"]: r for r in rows}
    view = plan_view(rows, args.holdout_group)
    out = Path(args.out)
    for split, files in view.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.npz"):
            old.unlink()
        for name in files:
            src_split = by_file[name]["split"]
            os.symlink(data / "rigs" / src_split / name, folder / name)
    # the manifest beside the split folders, so `evaluate` finds each rig's kind by itself
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "view.json").write_text(json.dumps({"data": str(data), "holdout_groups": args.holdout_group,
                                               "counts": {k: len(v) for k, v in view.items()}}, indent=2))
    print(json.dumps({k: len(v) for k, v in view.items()}))
    return 0
