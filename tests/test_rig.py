"""The Rig type, validation and the .npz layout."""
import zipfile

import numpy as np
import pytest

from backend.io.npz import load_npz, save_npz
from backend.rig import RigError, hierarchy_order, make_rig, sanitize_weights


def tiny_rig(**kw):
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]], np.int32)
    joints = np.array([[0, 0, 0], [0, 0, 0.5]], np.float32)
    args = dict(vertices=verts, faces=faces, joints=joints, parents=[-1, 0], name="tiny.npz")
    args.update(kw)
    return make_rig(**args)


def test_hierarchy_order_puts_parents_first():
    parents = np.array([2, -1, 1, 0])
    order = list(hierarchy_order(parents))
    for j, p in enumerate(parents):
        if p >= 0:
            assert order.index(p) < order.index(j)


def test_cycle_is_refused_with_the_file_name():
    with pytest.raises(RigError, match="tiny.npz.*cycle"):
        tiny_rig(joints=np.zeros((3, 3)), parents=[2, 0, 1])


@pytest.mark.parametrize("change, message", [
    (dict(vertices=np.zeros((0, 3))), "empty"),
    (dict(faces=np.zeros((0, 3))), "no faces"),
    (dict(vertices=np.array([[0, 0, np.nan]] * 4)), "NaN"),
    (dict(is_deform=[False, False]), "no deform bone"),
    (dict(weights=np.ones((4, 3))), "shape"),
    (dict(weights=-np.ones((4, 2))), "negative"),
])
def test_bad_input_gets_a_clear_error(change, message):
    with pytest.raises(RigError, match=message):
        tiny_rig(**change)


def test_default_tails_point_to_children():
    rig = tiny_rig()
    np.testing.assert_allclose(rig.tails[0], rig.joints[1])
    assert np.linalg.norm(rig.tails[1] - rig.joints[1]) > 0


def test_sanitize_weights_normalises_and_reports_empty_rows():
    w, empty = sanitize_weights(np.array([[2.0, 2.0], [0.0, 0.0], [-1.0, 3.0]]))
    np.testing.assert_allclose(w, [[0.5, 0.5], [0, 0], [0, 1]])
    assert empty.tolist() == [False, True, False]


def test_npz_round_trip(tmp_path):
    w = np.array([[1, 0], [0.5, 0.5], [0, 1], [0.25, 0.75]], np.float32)
    rig = tiny_rig(weights=w, joint_names=["root", "spine"], is_deform=[True, True])
    path = save_npz(rig, tmp_path / "r.npz")
    back = load_npz(path)
    np.testing.assert_array_equal(back.vertices, rig.vertices)
    np.testing.assert_array_equal(back.weights, w)
    assert back.joint_names == ["root", "spine"]
    assert back.parents.tolist() == [-1, 0]


def test_truncated_npz_names_the_file(tmp_path):
    rig = tiny_rig()
    path = save_npz(rig, tmp_path / "r.npz")
    data = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RigError, match="truncated.npz"):
        load_npz(bad)


def test_pickled_npz_is_refused(tmp_path):
    bad = tmp_path / "pickled.npz"
    np.savez(bad, vertices=np.array([object()], dtype=object), faces=np.zeros((1, 3)),
             joints=np.zeros((1, 3)), parents=np.array([-1]))
    with pytest.raises(RigError, match="pickled"):
        load_npz(bad)
    assert zipfile.is_zipfile(bad)


def test_failed_save_leaves_the_old_file(tmp_path):
    rig = tiny_rig()
    path = save_npz(rig, tmp_path / "r.npz")
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 -- any failure to write must leave the old file
        save_npz(rig, path, bad=np.array([object()], dtype=object))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npz"]
