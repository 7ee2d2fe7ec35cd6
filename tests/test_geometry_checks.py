"""Geometry that cannot be skinned is refused before any feature is computed; a skeleton mostly
outside its mesh is warned about."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from backend.inference.geometry_checks import GeometryWarning, check_geometry
from backend.inference.predictor import Predictor
from backend.io.npz import load_npz, rig_arrays, save_npz
from backend.rig import RigError, make_rig
from conftest import make_capsule_chain

ROOT = Path(__file__).resolve().parents[1]


def moved(rig, vertices=None, joints_shift=0.0, scale=1.0):
    v = rig.vertices if vertices is None else vertices
    return make_rig(v * scale, rig.faces, (rig.joints + joints_shift) * scale, rig.parents,
                    tails=(rig.tails + joints_shift) * scale, name="odd")


def test_a_skeleton_far_from_the_mesh_is_refused():
    rig = make_capsule_chain(3, with_weights=False)
    with pytest.raises(RigError, match=r"skeleton lies 1\.69e\+03 character sizes away"):
        Predictor(mode="geodesic").predict(moved(rig, joints_shift=1000 * 3.6))


@pytest.mark.parametrize("case, message", [("point", "all vertices lie at one point"),
                                           ("tiny", "bounding box is 3.7e-30 across")])
def test_a_mesh_without_size_is_refused(case, message):
    rig = make_capsule_chain(3, with_weights=False)
    odd = moved(rig, vertices=np.zeros_like(rig.vertices) + 1.0) if case == "point" else moved(rig, scale=1e-30)
    with pytest.raises(RigError, match=message):
        Predictor(mode="geodesic").predict(odd)


def test_a_skeleton_mostly_outside_the_mesh_is_warned_about_and_a_good_one_is_not():
    rig = make_capsule_chain(4, with_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_geometry(rig)
    with pytest.warns(GeometryWarning, match="3 of 4 bones start outside"):
        check_geometry(moved(rig, joints_shift=np.array([0.0, 0.0, 3.0])))


def test_non_integer_face_indices_are_refused(tmp_path):
    rig = make_capsule_chain(2, with_weights=False)
    arrays = rig_arrays(rig)
    arrays["faces"] = arrays["faces"].astype(np.float64)
    np.savez(tmp_path / "whole.npz", **arrays)
    assert np.array_equal(load_npz(tmp_path / "whole.npz").faces, rig.faces)  # whole numbers stored as floats pass
    arrays["faces"][5, 1] += 0.5
    np.savez(tmp_path / "half.npz", **arrays)
    with pytest.raises(RigError, match=r"face indices must be whole numbers, got 1 that are not"):
        load_npz(tmp_path / "half.npz")


def test_skin_prints_a_one_line_warning_and_refuses_in_one_line(tmp_path):
    rig = make_capsule_chain(4, with_weights=False)
    save_npz(moved(rig, joints_shift=np.array([0.0, 0.0, 3.0])), tmp_path / "outside.npz")
    proc = skin(tmp_path / "outside.npz", tmp_path / "o.npz")
    assert proc.returncode == 0 and (tmp_path / "o.npz").is_file()
    assert proc.stderr.startswith("warning: ") and "outside the mesh's bounding box" in proc.stderr
    assert proc.stderr.count("\n") == 1
    save_npz(moved(rig, joints_shift=5000.0), tmp_path / "far.npz")
    proc = skin(tmp_path / "far.npz", tmp_path / "f.npz")
    assert proc.returncode == 2 and "character sizes away" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "f.npz").exists()


def skin(src: Path, dst: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "skin", str(src), str(dst), "--mode", "geodesic"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
