"""On-disk cache of preprocessed samples: one ``.npz`` per key, written atomically.

The key is a SHA-256 of ``key_parts``: arrays by their dtype, shape and bytes, everything else by
its JSON form (dataclasses as dicts). Put the rig arrays, a feature-version string and the
feature config into it; changing any of them computes afresh.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backend.io.atomic import atomic_path


def key_fields(value: Any) -> dict:
    """A dataclass instance as a dict for keys and stored configs: fields marked
    ``metadata={"key_omits_default": True}`` (options added later) are left out while they hold their
    default, so keys made before the option existed stay valid."""
    d = dataclasses.asdict(value)
    for f in dataclasses.fields(value):
        if f.metadata.get("key_omits_default") and getattr(value, f.name) == f.default:
            d.pop(f.name)
    return d


def _feed(h: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.ascontiguousarray(value)
        if arr.dtype == object:
            raise TypeError("object arrays cannot be part of a cache key")
        h.update(b"A" + str(arr.dtype).encode() + repr(arr.shape).encode())
        h.update(arr.tobytes())
    elif isinstance(value, dict):
        h.update(b"D%d" % len(value))
        for k in sorted(value, key=str):
            _feed(h, str(k))
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(b"L%d" % len(value))
        for item in value:
            _feed(h, item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _feed(h, type(value).__name__)
        _feed(h, key_fields(value))
    else:
        h.update(b"J" + json.dumps(value, sort_keys=True, default=str).encode())


def cache_key(key_parts: dict) -> str:
    """Hex SHA-256 of the key parts (order of dict keys does not matter)."""
    h = hashlib.sha256()
    _feed(h, key_parts)
    return h.hexdigest()


def cached(cache_dir: str | Path, key_parts: dict,
           compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays for ``key_parts``: read from ``cache_dir/<hash>.npz`` or computed by
    ``compute()`` and stored there (atomic write, no pickles). A damaged cache file is
    recomputed and replaced."""
    path = Path(cache_dir) / f"{cache_key(key_parts)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):
            pass  # unreadable: fall through and rebuild it
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    bad = [k for k, v in arrays.items() if v.dtype == object]
    if bad:
        raise TypeError(f"cannot cache object arrays {bad} (allow_pickle=False)")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays
