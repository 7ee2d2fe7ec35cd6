"""On-disk feature cache: hits, misses on a changed key, damaged files."""
from __future__ import annotations

import numpy as np

from backend.features.cache import cache_key, cached


def test_second_call_reads_and_a_new_version_recomputes(tmp_path):
    calls = []
    rig_arrays = {"vertices": np.arange(12, dtype=np.float32).reshape(4, 3)}

    def compute():
        calls.append(1)
        return {"x": np.arange(5) * len(calls), "y": np.ones((2, 2), np.float32)}

    a = cached(tmp_path, {"rig": rig_arrays, "version": "v1", "k": 8}, compute)
    b = cached(tmp_path, {"k": 8, "version": "v1", "rig": rig_arrays}, compute)
    assert len(calls) == 1
    assert np.array_equal(a["x"], b["x"]) and b["y"].dtype == np.float32
    c = cached(tmp_path, {"rig": rig_arrays, "version": "v2", "k": 8}, compute)
    assert len(calls) == 2 and np.array_equal(c["x"], np.arange(5) * 2)
    moved = {"vertices": rig_arrays["vertices"] + 1e-3}
    cached(tmp_path, {"rig": moved, "version": "v1", "k": 8}, compute)
    assert len(calls) == 3
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_key_distinguishes_dtype_and_shape():
    a = np.zeros(4, np.float32)
    assert cache_key({"a": a}) != cache_key({"a": a.astype(np.float64)})
    assert cache_key({"a": a}) != cache_key({"a": a.reshape(2, 2)})
    assert cache_key({"a": a, "b": 1}) == cache_key({"b": 1, "a": a.copy()})


def test_damaged_file_is_rebuilt(tmp_path):
    parts = {"version": "v1"}
    cached(tmp_path, parts, lambda: {"x": np.arange(3)})
    (tmp_path / f"{cache_key(parts)}.npz").write_bytes(b"not a zip")
    out = cached(tmp_path, parts, lambda: {"x": np.arange(4)})
    assert np.array_equal(out["x"], np.arange(4))
    assert np.array_equal(cached(tmp_path, parts, lambda: {"x": np.zeros(1)})["x"], np.arange(4))
