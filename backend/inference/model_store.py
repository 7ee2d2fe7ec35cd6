"""The versioned models folder (standard library only: the add-on imports it).

Layout of a models folder (``models/`` at the repository root by default)::

    autoskin.onnx          the model in use (what the add-on and ``predict`` load by default)
    autoskin.pth           its generator checkpoint (optional, for the shipped model)
    autoskin-v1.onnx       version 1 ...
    autoskin-v1.pth        ... the generator checkpoint it was exported from
    autoskin-v1.md         ... its model card for people
    autoskin-v1.json       ... and for programs; written LAST, so a version without it is incomplete

Checkpoints use ``.pth`` (not ``.pt``, which .gitignore excludes) so a shipped one can be committed.
A version is listed only when its ``.onnx`` and ``.json`` exist. The model in use is identified by
content: the card whose ``onnx_sha256`` equals the hash of ``autoskin.onnx``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from backend.io.atomic import atomic_path
from backend.rig import RigError

CURRENT_NAME = "autoskin.onnx"
CURRENT_CHECKPOINT = "autoskin.pth"
PATTERN = re.compile(r"^autoskin-v(\d+)\.(onnx|pth|md|json)$")
#: Models folder of a repository checkout.
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "models"


@dataclass
class ModelVersion:
    """One complete version: number, files (checkpoint None when absent) and its card (dict)."""

    version: int
    onnx: Path
    card_path: Path
    checkpoint: Optional[Path]
    card: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"v{self.version}"

    @property
    def label(self) -> str:
        """A one-line description for menus: ``v3 (2025-01-01, 4 corrections)``."""
        created = str(self.card.get("created", ""))[:10]
        n = len(self.card.get("corrections", []))
        bits = [b for b in (created, f"{n} correction{'s' if n != 1 else ''}" if n else "") if b]
        return f"{self.name} ({', '.join(bits)})" if bits else self.name


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_paths(folder: str | os.PathLike, version: int) -> dict[str, Path]:
    """{"onnx", "pth", "md", "json"} -> the paths of version ``version`` in ``folder``."""
    folder = Path(folder)
    return {ext: folder / f"autoskin-v{version}.{ext}" for ext in ("onnx", "pth", "md", "json")}


def _read_card(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_models(folder: str | os.PathLike = DEFAULT_FOLDER) -> list[ModelVersion]:
    """Complete versions in ``folder`` (onnx + readable json card), oldest first; [] if no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    numbers = sorted({int(m.group(1)) for p in folder.iterdir() if (m := PATTERN.match(p.name))})
    out = []
    for n in numbers:
        paths = version_paths(folder, n)
        if not paths["onnx"].is_file() or not paths["json"].is_file():
            continue
        card = _read_card(paths["json"])
        if card is None:
            continue
        out.append(ModelVersion(n, paths["onnx"], paths["json"], paths["pth"] if paths["pth"].is_file() else None,
                                card))
    return out


def newest_model(folder: str | os.PathLike = DEFAULT_FOLDER) -> Optional[ModelVersion]:
    """The highest complete version, or None."""
    models = list_models(folder)
    return models[-1] if models else None


def get_model(folder: str | os.PathLike, version: int) -> ModelVersion:
    """Version ``version``; RigError naming the folder and the versions there when it is missing."""
    for m in list_models(folder):
        if m.version == version:
            return m
    have = ", ".join(m.name for m in list_models(folder)) or "none"
    raise RigError(f"{folder}: no complete model version v{version} (versions: {have})")


def next_version(folder: str | os.PathLike) -> int:
    """1 + the highest version number any ``autoskin-vN.*`` file uses (complete or not), so a new
    version never reuses the name of a left-over partial one."""
    folder = Path(folder)
    if not folder.is_dir():
        return 1
    nums = [int(m.group(1)) for p in folder.iterdir() if (m := PATTERN.match(p.name))]
    return max(nums, default=0) + 1


def current_model(folder: str | os.PathLike = DEFAULT_FOLDER) -> Optional[ModelVersion]:
    """The version whose ONNX file is byte-identical to ``autoskin.onnx``, or None."""
    cur = Path(folder) / CURRENT_NAME
    if not cur.is_file():
        return None
    digest = file_sha256(cur)
    for m in reversed(list_models(folder)):
        if m.card.get("onnx_sha256") == digest:
            return m
    return None


def current_checkpoint(folder: str | os.PathLike = DEFAULT_FOLDER) -> Path:
    """The generator checkpoint that produced the model in use: the checkpoint of
    :func:`current_model`, else ``autoskin.pth`` beside ``autoskin.onnx``; RigError if neither."""
    folder = Path(folder)
    m = current_model(folder)
    if m is not None and m.checkpoint is not None:
        return m.checkpoint
    beside = folder / CURRENT_CHECKPOINT
    if beside.is_file():
        return beside
    raise RigError(f"{folder}: cannot tell which generator checkpoint made {CURRENT_NAME} (no version card matches "
                   f"it and there is no {CURRENT_CHECKPOINT}); pass --base CHECKPOINT")


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file beside ``dst`` + rename."""
    dst = Path(dst)
    with atomic_path(dst, suffix=dst.suffix + ".tmp") as tmp:
        shutil.copyfile(src, tmp)
    return dst


def write_json_atomic(path: str | os.PathLike, data: dict) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        tmp.write_text(text)
    return path


def activate(folder: str | os.PathLike, version: int) -> ModelVersion:
    """Make version ``version`` the model in use: its checkpoint, then its ONNX file are copied over
    ``autoskin.pth`` / ``autoskin.onnx`` (each atomically; the ONNX last, so the model in use is
    replaced only once everything else is in place)."""
    m = get_model(folder, version)
    folder = Path(folder)
    if m.checkpoint is not None:
        copy_atomic(m.checkpoint, folder / CURRENT_CHECKPOINT)
    copy_atomic(m.onnx, folder / CURRENT_NAME)
    return m


def register_current(folder: str | os.PathLike) -> Optional[ModelVersion]:
    """Make sure the model in use has a version: when ``autoskin.onnx`` matches no card, copy it (and
    ``autoskin.pth``) to the next free version with a card saying so. Returns that version (None when
    there is no ``autoskin.onnx``)."""
    folder = Path(folder)
    cur = folder / CURRENT_NAME
    if not cur.is_file():
        return None
    known = current_model(folder)
    if known is not None:
        return known
    n = 0 if next_version(folder) == 1 else next_version(folder)
    paths = version_paths(folder, n)
    copy_atomic(cur, paths["onnx"])
    ckpt = folder / CURRENT_CHECKPOINT
    if ckpt.is_file():
        copy_atomic(ckpt, paths["pth"])
    card = {"version": n, "note": f"the model in use ({CURRENT_NAME}) before it was first replaced by a fine-tuned one",
            "onnx": paths["onnx"].name, "onnx_sha256": file_sha256(paths["onnx"]),
            "checkpoint": paths["pth"].name if ckpt.is_file() else None, "corrections": []}
    write_text_atomic(paths["md"], f"# Auto Skin model v{n}\n\n{card['note']}.\n")
    write_json_atomic(paths["json"], card)
    return get_model(folder, n)
