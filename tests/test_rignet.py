"""RigNet rig_info + OBJ reader (pure Python, no bpy)."""
from __future__ import annotations

import numpy as np
import pytest

from backend.io.rignet import find_obj_for, is_rig_info, load_rignet, read_obj
from backend.rig import RigError

OBJ = """# a unit square pyramid: one quad, four triangles
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vn 0 0 1
v 0.5 0.5 1
f 1/1/1 4/1/1 3/1/1 2/1/1
f 1//1 2//1 5//1
f 2 3 5
f 3 4 5
f -2 -5 -1
"""

RIG = """joints hips 0.5 0.5 0.1
joints spine 0.5 0.5 0.5
joints head 0.5 0.5 0.9
root hips
hier hips spine
hier spine head
skin 0 hips 1.0
skin 1 hips 2.0 spine 2.0
skin 4 head 0.75 spine 0.25
"""


def write(tmp_path, obj=OBJ, rig=RIG, stem="m"):
    (tmp_path / f"{stem}.obj").write_text(obj)
    (tmp_path / f"{stem}.txt").write_text(rig)
    return tmp_path / f"{stem}.txt", tmp_path / f"{stem}.obj"


def test_read_obj_fans_polygons_and_handles_slashes_and_negative_indices(tmp_path):
    _, obj = write(tmp_path)
    v, f = read_obj(obj)
    assert v.shape == (5, 3) and f.dtype == np.int32
    np.testing.assert_array_equal(f, [[0, 3, 2], [0, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])


def test_load_rignet(tmp_path):
    txt, obj = write(tmp_path)
    assert is_rig_info(txt) and not is_rig_info(obj)
    assert find_obj_for(txt) == obj
    rig = load_rignet(txt, obj)
    assert rig.joint_names == ["hips", "spine", "head"]
    np.testing.assert_array_equal(rig.parents, [-1, 0, 1])
    np.testing.assert_allclose(rig.joints[2], [0.5, 0.5, 0.9])
    np.testing.assert_allclose(rig.tails[0], rig.joints[1])  # tail = the child's head
    w = rig.weights
    np.testing.assert_allclose(w[0], [1, 0, 0])
    np.testing.assert_allclose(w[1], [0.5, 0.5, 0])  # normalised
    np.testing.assert_allclose(w[4], [0, 0.25, 0.75])
    np.testing.assert_allclose(w[2:4], 0)  # unlisted vertices stay unweighted
    assert rig.is_deform.all()


def test_find_obj_in_sibling_folder(tmp_path):
    (tmp_path / "rig_info").mkdir()
    (tmp_path / "obj_remesh").mkdir()
    (tmp_path / "rig_info" / "17.txt").write_text(RIG)
    (tmp_path / "obj_remesh" / "17.obj").write_text(OBJ)
    assert find_obj_for(tmp_path / "rig_info" / "17.txt") == tmp_path / "obj_remesh" / "17.obj"
    assert find_obj_for(tmp_path / "rig_info" / "18.txt") is None


@pytest.mark.parametrize("bad, match", [
    (RIG.replace("skin 4 head", "skin 4 tail"), r"m.txt:9: skin names unknown joint 'tail'"),
    (RIG.replace("skin 4", "skin 9"), r"m.txt:9: skin vertex 9 outside 0..4"),
    (RIG.replace("hier spine head", "hier head hips"), "root 'hips' has a parent"),
    (RIG.replace("root hips\n", "").replace("hier spine head", "hier spine head\nhier head hips"), "cycle"),
    (RIG.replace("hier spine head", "hier spine head\nhier hips head"), r"m.txt:7: joint 'head' has two parents"),
    (RIG.replace("joints spine 0.5 0.5 0.5", "joints spine 0.5 zero 0.5"), r"m.txt:2: could not convert"),
    (RIG + "bones x\n", r"m.txt:10: unknown record 'bones'"),
    ("root a\n", "no 'joints' lines"),
])
def test_bad_rig_info_names_file_and_line(tmp_path, bad, match):
    txt, obj = write(tmp_path, rig=bad)
    with pytest.raises(RigError, match=match):
        load_rignet(txt, obj)


def test_bad_obj(tmp_path):
    txt, obj = write(tmp_path, obj="v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    with pytest.raises(RigError, match="face indices outside"):
        load_rignet(txt, obj)
    with pytest.raises(RigError, match="no such file"):
        load_rignet(txt, tmp_path / "nope.obj")
