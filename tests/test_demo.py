"""The README's main job: Auto Skin the built-in sample, write the weights, a .blend and pictures."""
import numpy as np
import pytest

from backend.__main__ import main
from backend.io.npz import load_npz

pytest.importorskip("bpy")


def test_demo_writes_weights_blend_and_pictures(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--mode", "geodesic"]) == 0
    rig = load_npz(tmp_path / "skinned.npz")
    np.testing.assert_allclose(rig.weights.sum(axis=1), 1.0, atol=1e-4)
    assert (rig.weights > 0).sum(axis=1).max() <= 4
    assert (tmp_path / "skinned.blend").stat().st_size > 10_000
    for png in ("weights.png", "poses.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rows sum to 1: True" in capsys.readouterr().out
