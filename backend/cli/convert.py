"""Convert a folder of rigged assets (.glb/.gltf/.fbx/.blend, RigNet rig_info .txt + .obj) into
the project's .npz layout, mirroring the folder structure. A file that cannot be converted is
skipped with its reason; the others are converted.

Example: python -m backend convert assets/ converted/
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "convert"
HELP = "convert rigged .glb/.gltf/.fbx/.blend and RigNet files into .npz rigs"

BLENDER_SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="folder searched recursively for rigged assets")
    parser.add_argument("dst", type=Path, help="output folder for the .npz files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing .npz files (default: skip them)")
    parser.add_argument("--no-weld", action="store_true",
                        help="keep seam-split duplicate vertices of Blender imports (default: weld them)")
    parser.add_argument("--allow-unweighted", action="store_true",
                        help="also convert rigs without skin weights (default: skip them)")


def find_sources(src: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Convertible files under ``src`` (sorted) and (file, reason) for the RigNet .txt files
    that lack their OBJ. Other files are ignored silently."""
    from backend.io.rignet import find_obj_for, is_rig_info

    found, skipped = [], []
    for p in sorted(src.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        s = p.suffix.lower()
        if s in BLENDER_SUFFIXES:
            found.append(p)
        elif s == ".txt" and is_rig_info(p):
            if find_obj_for(p) is None:
                skipped.append((p, "RigNet rig_info without a matching .obj"))
            else:
                found.append(p)
    return found, skipped


def convert_one(path: Path, weld: bool, require_weights: bool):
    """Read one source file into a Rig (bpy only imported for Blender formats)."""
    if path.suffix.lower() == ".txt":
        from backend.io.rignet import find_obj_for, load_rignet

        rig = load_rignet(path, find_obj_for(path))
        if require_weights and rig.weights is None:
            from backend.rig import RigError

            raise RigError(f"{path}: no skin lines")
        return rig
    from backend.blender.files import load_rig_file

    return load_rig_file(path, weld=weld, require_weights=require_weights)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.io.npz import save_npz
    from backend.rig import RigError

    src, dst = args.src, args.dst
    if not src.is_dir():
        raise RigError(f"{src}: not a folder")
    sources, skipped = find_sources(src)
    total = len(sources) + len(skipped)
    converted = 0
    for path in tqdm(sources, desc="convert", unit="file"):
        out = dst / path.relative_to(src).with_suffix(".npz")
        if out.exists() and not args.overwrite:
            skipped.append((path, f"{out} exists (use --overwrite)"))
            continue
        try:
            rig = convert_one(path, weld=not args.no_weld, require_weights=not args.allow_unweighted)
            rig.name = str(path)
            save_npz(rig, out)
            converted += 1
        except RigError as exc:
            skipped.append((path, str(exc)))
        except Exception as exc:  # an importer bug must not stop the batch
            skipped.append((path, f"{path}: unexpected {type(exc).__name__}: {exc}"))
    print(f"converted {converted} of {total} files into {dst}; skipped {len(skipped)}")
    for path, reason in skipped:
        print(f"  skipped {reason if reason.startswith(str(path)) else f'{path}: {reason}'}")
    return 0 if converted or not sources else 1
