"""Checks of a command's output path, made before any work: a clear one-line RigError instead of a
traceback after minutes of computing, and never an input overwritten."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from backend.rig import RigError


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder, else None."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _nearest_existing(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file or folder (through links and relative paths too)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_place(path: Path, what: str) -> None:
    blocker = _blocking_file(path)
    if blocker is not None:
        raise RigError(f"{path}: cannot write the {what} there, {blocker} is a file, not a folder")
    home = _nearest_existing(path)
    if not os.access(home, os.W_OK | os.X_OK):
        raise RigError(f"{path}: cannot write the {what} there, {home} is not writable")


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), what: str = "output",
                      suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a Path when a file can be written there: not a folder, not under a file, not one of
    ``inputs`` (which it would overwrite), ending in one of ``suffixes`` when given; else RigError."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise RigError(f"{path}: the {what} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise RigError(f"{path}: the {what} is an existing folder; give a file name")
    for src in inputs:
        if _same(path, Path(src)):
            raise RigError(f"{path}: the {what} is also an input and would overwrite it; choose another output")
    _check_place(path, what)
    return path


def check_output_folder(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                        what: str = "output folder") -> Path:
    """``path`` as a Path, created, when files can be written in it: not a file, not under a file,
    not one of the ``inputs`` folders (whose files it would overwrite); else RigError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RigError(f"{path}: the {what} is an existing file, not a folder")
    for src in inputs:
        if _same(path, Path(src)):
            raise RigError(f"{path}: the {what} is also the input folder and its files would be overwritten; "
                           f"choose another {what}")
    _check_place(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RigError(f"{path}: cannot create the {what} ({exc.strerror})") from None
    return path
