"""Predict skin weights for every rig .npz of a folder.

For each IN_DIR/*.npz (any weights in it are ignored) writes OUT_DIR/<same name>.npz holding ONE
key, ``weights``: (V, J) float32 over all J bones of the input, zero columns for non-deform bones,
each row summing to 1. A file that cannot be read or predicted is reported and skipped; the
others are still written. Exit status: 0 when at least one file was written (a summary of any
failures goes to stderr), 1 when none was (including an empty IN_DIR), 2 for a missing IN_DIR,
an unusable model or an unusable OUT_DIR (a file, under a file, or IN_DIR itself: checked before
any rig is predicted).
"""
from __future__ import annotations

import argparse

from backend.cli.skin import add_common, make_predictor

NAME = "predict"
HELP = "predict weights for every .npz of a folder (OUT_DIR/<name>.npz with key 'weights')"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("in_dir", help="folder of rig .npz files")
    p.add_argument("out_dir", help="output folder (created; not IN_DIR)")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from backend.inference.rigfiles import read_rig_for_prediction
    from backend.io.npz import save_arrays
    from backend.io.outputs import check_output_folder
    from backend.rig import RigError

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        print(f"error: {in_dir}: no such folder", file=sys.stderr)
        return 2
    files = sorted(p for p in in_dir.glob("*.npz") if p.is_file())
    if not files:
        print(f"error: {in_dir}: no .npz files", file=sys.stderr)
        return 1
    check_output_folder(out_dir, [in_dir])
    predictor = make_predictor(args)
    written, failed = 0, []
    bar = tqdm(files, desc=f"predict ({args.mode})", unit="rig", file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name[:30])
        try:
            rig = read_rig_for_prediction(path)
            pred = predictor.predict(rig, max_influences=args.max_influences)
            save_arrays(out_dir / path.name, weights=pred.weights.astype(np.float32))
            written += 1
        except RigError as exc:  # the message already names the file
            failed.append((path.name, str(exc)))
            tqdm.write(f"skipped {exc}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 -- one bad rig must not stop the batch
            msg = f"{path}: {type(exc).__name__}: {exc}"
            failed.append((path.name, msg))
            tqdm.write(f"skipped {msg}", file=sys.stderr)
    bar.close()
    print(f"predict: {written} written to {out_dir}, {len(failed)} failed ({predictor.provider})", file=sys.stderr)
    for name, msg in failed:
        print(f"  failed {name}: {msg}", file=sys.stderr)
    return 0 if written else 1
