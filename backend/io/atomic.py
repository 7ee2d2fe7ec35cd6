"""Atomic file writes: write to a temporary file beside the target, flush it to disk, then rename."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is flushed to disk (fsync) and
    replaces ``path``, and the folder's entry is flushed too, so a power cut leaves the old or the new
    file, never a half-written one.

    On error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        if os.name == "posix":  # a folder cannot be opened for fsync on Windows
            fsync_path(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def fsync_path(path: Path) -> None:
    """Flush a file's (or on POSIX a folder's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unique_path(path: str | os.PathLike) -> Path:
    """``path`` if free, else ``stem_001.ext``, ``stem_002.ext``...: never overwrites."""
    path = Path(path)
    if not path.exists():
        return path
    for i in range(1, 100000):
        cand = path.with_name(f"{path.stem}_{i:03d}{path.suffix}")
        if not cand.exists():
            return cand
    raise FileExistsError(f"no free file name next to {path}")
