"""A second source of unlabelled rigs: any folder of rigged ``.npz`` files, weights dropped."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Iterator

from backend.io.npz import load_npz, save_npz
from backend.rig import Rig, RigError


def _files(dirs: Iterable[str | Path], recursive: bool) -> list[Path]:
    out: list[Path] = []
    for d in [dirs] if isinstance(dirs, (str, Path)) else dirs:
        d = Path(d)
        if d.is_file():
            out.append(d)
        elif d.is_dir():
            out.extend(sorted(d.rglob("*.npz") if recursive else d.glob("*.npz")))
        else:
            raise RigError(f"{d}: no such file or folder")
    return out


def iter_unlabelled(dirs: Iterable[str | Path] | str | Path, recursive: bool = True,
                    skip_bad: bool = False) -> Iterator[Rig]:
    """Yield every rig of the ``.npz`` files in ``dirs`` (sorted by path) without weights.

    A bad file raises RigError naming it, or with ``skip_bad`` is reported on stderr and skipped.
    """
    for path in _files(dirs, recursive):
        try:
            rig = load_npz(path)
        except RigError as exc:
            if not skip_bad:
                raise
            print(f"skipping {exc}", file=sys.stderr)
            continue
        yield rig.without_weights()


def strip_weights_folder(src_dir: str | Path, dst_dir: str | Path, recursive: bool = True) -> list[Path]:
    """Copy every rig under ``src_dir`` to ``dst_dir`` (same relative path) without its weights.
    Returns the written paths; each file is written atomically."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if not src_dir.is_dir():
        raise RigError(f"{src_dir}: no such folder")
    written = []
    for path in _files([src_dir], recursive):
        rig = load_npz(path).without_weights()
        written.append(save_npz(rig, dst_dir / path.relative_to(src_dir), include_weights=False))
    return written
