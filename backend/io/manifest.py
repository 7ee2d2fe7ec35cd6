"""Reading a data folder's manifest.jsonl (one JSON object per rig file)."""
from __future__ import annotations

import json
from pathlib import Path

from backend.rig import RigError


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a manifest.jsonl; RigError naming the file (and line) when it cannot be read."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RigError(f"{path}: cannot read the manifest ({exc})") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RigError(f"{path}: line {i} is not JSON ({exc})") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows
