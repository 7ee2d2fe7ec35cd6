"""Make a data view: folders of links into the rig data with chosen asset groups held out.

Example (the shipped model's view: MakeHuman and the mech pack are the out-of-style check
that training never sees)::

    python -m backend data-view ../shared/data --out runs/views/shipped \\
        --holdout-group makehuman_basemesh --holdout-group q_mech_pack

writes ``OUT/train`` (train split minus the held-out groups), ``OUT/val``, ``OUT/test`` and
``OUT/out_of_style`` (the held-out groups), each a folder of symbolic links, plus ``OUT/view.json``
and a copy of ``manifest.jsonl`` (so ``evaluate`` finds each rig's kind).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

NAME = "data-view"
HELP = "folders of links into the rig data with asset groups held out (out-of-style check)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="data root holding manifest.jsonl and rigs/{train,val,test}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--holdout-group", action="append", default=[],
                   help="manifest group (or group prefix) held out of train into out_of_style; repeatable")


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


def run(args: argparse.Namespace) -> int:
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
