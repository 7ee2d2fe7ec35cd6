"""Write procedural rigged creatures (no weights) as .npz files, and/or a contact sheet.

  python -m backend synth --count 1000 --seed 1 --out runs/synth1000
  python -m backend synth --count 25 --seed 0 --sheet docs/figures/creatures.png

Creature i of a run depends only on (seed, i): same seed, same arrays. Files are named
synth_<seed>_<index>_<kind>.npz; a manifest.jsonl (kind, variant, V, F, J, defects) is
written beside them.
"""
from __future__ import annotations

import argparse

from backend.cli._types import bounded

NAME = "synth"
HELP = "generate procedural rigged creatures (unlabelled data) and contact sheets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=100, help="number of creatures (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--start", type=int, default=0, help="index of the first creature (default 0)")
    parser.add_argument("--out", help="folder for the .npz files")
    parser.add_argument("--sheet", help="PNG contact sheet of the creatures (5 columns)")
    parser.add_argument("--kind", help="only this kind (default: every kind in turn)")
    parser.add_argument("--detail", type=float, default=1.0, help="vertex-count factor (default 1)")
    parser.add_argument("--jobs", type=bounded(int, 1, what="worker processes"), default=1,
                        help="worker processes, >= 1 (default 1)")


def _make(task: tuple) -> tuple:
    from backend.synth.creature import generate_creature

    seed, index, kind, detail, out = task
    rig = generate_creature(seed, index, kind=kind, detail=detail)
    row = {"file": None, "index": index, "kind": str(rig.extra["kind"]), "variant": str(rig.extra["variant"]),
           "V": rig.num_vertices, "F": int(len(rig.faces)), "J": rig.num_bones,
           "defects": str(rig.extra["defects"]), "unit_scale": float(rig.extra["unit_scale"])}
    if out is not None:
        from pathlib import Path

        from backend.io.npz import save_npz

        path = Path(out) / f"{rig.name}.npz"
        save_npz(rig, path, include_weights=False)
        row["file"] = path.name
        return row, None
    return row, rig


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from backend.io.atomic import atomic_path
    from backend.io.outputs import check_output_file, check_output_folder
    from backend.synth.creature import KINDS

    if not args.out and not args.sheet:
        print("error: give --out DIR and/or --sheet PNG")
        return 2
    if args.count < 1:
        print("error: --count must be >= 1")
        return 2
    if args.kind and args.kind not in KINDS:
        print(f"error: unknown kind {args.kind!r}; choose from {', '.join(KINDS)}")
        return 2
    out = check_output_folder(args.out) if args.out else None
    if args.sheet:
        check_output_file(args.sheet, what="contact sheet", suffixes=(".png",))
    tasks = [(args.seed, i, args.kind, args.detail, str(out) if out else None)
             for i in range(args.start, args.start + args.count)]
    rows, rigs = [], []
    t0 = time.perf_counter()
    if args.jobs > 1 and out is not None:
        with ProcessPoolExecutor(args.jobs) as pool:
            for row, _ in tqdm(pool.map(_make, tasks, chunksize=8), total=len(tasks), desc="creatures"):
                rows.append(row)
    else:
        for t in tqdm(tasks, desc="creatures", disable=len(tasks) < 5):
            row, rig = _make(t)
            rows.append(row)
            if args.sheet:
                if rig is None:
                    from backend.io.npz import load_npz

                    rig = load_npz(out / row["file"])
                rigs.append(rig)
    dt = time.perf_counter() - t0
    if out is not None:
        with atomic_path(out / "manifest.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if args.sheet:
        from backend.synth.sheet import contact_sheet

        if not rigs:  # generated in workers: reload
            from backend.io.npz import load_npz

            rigs = [load_npz(out / r["file"]) for r in rows]
        contact_sheet(rigs, args.sheet)
        print(f"wrote {args.sheet}")
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    vs = [r["V"] for r in rows]
    js = [r["J"] for r in rows]
    print(f"{len(rows)} creatures in {dt:.1f} s ({dt / len(rows):.3f} s each); V {min(vs)}..{max(vs)}, "
          f"J {min(js)}..{max(js)}; kinds {kinds}" + (f"; files in {out}" if out else ""))
    return 0
