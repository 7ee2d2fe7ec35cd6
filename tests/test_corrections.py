"""Reading artists' corrections: checks, duplicates, changed vertices (numpy only, generated rigs)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from backend.io.npz import save_npz
from backend.training.corrections import (changed_vertices, check_correction, content_hash, read_corrections,
                                          vertex_loss_weights)
from conftest import make_capsule_chain


def corrected(n_bones: int = 3):
    """(rig with corrected weights, predicted weights, moved rows): the tip region moved from
    bone_1 to bone_2, as an artist would."""
    rig = make_capsule_chain(n_bones, rings=8, segments=8)
    pred = rig.weights.copy()
    z = rig.vertices[:, 2]
    moved = (z > 1.6) & (z < 2.4)
    w = pred.copy()
    w[moved] = 0.0
    w[moved, 2] = 1.0
    changed = np.abs(w - pred).sum(1) > 0.05
    return rig.with_weights(w), pred, changed


def write(path, rig, pred=None, **extra):
    arrays = {} if pred is None else {"predicted_weights": pred}
    arrays.update(model_version=np.array("g-test"), source_file=np.array("scene.blend"))
    arrays.update(extra)
    return save_npz(rig, path, **arrays)


def test_changed_vertices_and_weights_known_answer():
    pred = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]], np.float32)
    corr = np.array([[1.0, 0.0], [0.52, 0.48], [0.8, 0.2]], np.float32)
    # L1 per row: 0, 0.04, 1.2
    assert changed_vertices(corr, pred, 0.05).tolist() == [False, False, True]
    assert changed_vertices(corr, pred, 0.03).tolist() == [False, True, True]
    assert vertex_loss_weights(np.array([True, False]), 5.0).tolist() == [5.0, 1.0]


def test_good_correction_is_read(tmp_path):
    rig, pred, changed = corrected()
    c = check_correction(write(tmp_path / "a.npz", rig, pred))
    assert changed.sum() > 10
    np.testing.assert_array_equal(c.changed, changed)
    assert c.model_version == "g-test" and c.source_file == "scene.blend"
    np.testing.assert_allclose(c.predicted, pred)
    assert "predicted_weights" not in c.rig.extra
    entry = c.card_entry()
    assert entry["changed_vertices"] == int(changed.sum()) and entry["sha256"] == c.content_hash
    # without a stored prediction the file is usable, nothing counts as changed
    c2 = check_correction(write(tmp_path / "b.npz", rig))
    assert c2.predicted is None and not c2.changed.any()


def test_broken_files_are_refused_with_a_reason(tmp_path):
    rig, pred, _ = corrected()
    good = write(tmp_path / "00_good.npz", rig, pred)
    (tmp_path / "01_truncated.npz").write_bytes(good.read_bytes()[:200])
    w = rig.weights.copy()
    w[5] *= 0.5
    write(tmp_path / "02_unnormalised.npz", rig.with_weights(w), pred)
    write(tmp_path / "03_pred_shape.npz", rig, pred[:, :2])
    write(tmp_path / "04_no_weights.npz", rig.without_weights(), pred)
    nd = rig.copy()
    nd.is_deform[1] = False
    write(tmp_path / "05_nondeform.npz", nd, pred)
    names = rig.copy()
    names.joint_names = ["a", "a", "b"]
    write(tmp_path / "06_names.npz", names, pred)
    (tmp_path / "07_text.npz").write_text("not a zip")
    res = read_corrections(tmp_path)
    assert [c.path.name for c in res.accepted] == ["00_good.npz"]
    why = {p.name: r for p, r in res.rejected}
    assert set(why) == {"01_truncated.npz", "02_unnormalised.npz", "03_pred_shape.npz", "04_no_weights.npz",
                        "05_nondeform.npz", "06_names.npz", "07_text.npz"}
    assert "not a readable" in why["01_truncated.npz"]
    assert "not an .npz archive" in why["07_text.npz"] and "pickled" not in why["07_text.npz"]
    assert "not normalised" in why["02_unnormalised.npz"] and "vertex 5" in why["02_unnormalised.npz"]
    assert "predicted_weights have shape" in why["03_pred_shape.npz"]
    assert "no 'weights'" in why["04_no_weights.npz"]
    assert "non-deform bone 'bone_1'" in why["05_nondeform.npz"]
    assert "bone names repeat" in why["06_names.npz"]
    lines = res.report_lines()
    assert lines[0].startswith("1 correction(s) accepted, 7 refused")
    with pytest.raises(Exception, match="02_unnormalised.npz"):
        check_correction(tmp_path / "02_unnormalised.npz")


def test_duplicates_are_found_by_content(tmp_path):
    rig, pred, _ = corrected()
    first = write(tmp_path / "a.npz", rig, pred)
    shutil.copy(first, tmp_path / "b_copy.npz")
    # same rig + weights, exported again from another scene with another prediction: still a duplicate
    write(tmp_path / "c_again.npz", rig, pred * 0.0 + 1.0 / 3.0, source_file=np.array("other.blend"))
    w = rig.weights.copy()
    w[0] = [0.0, 1.0, 0.0]
    write(tmp_path / "d_other.npz", rig.with_weights(w), pred)
    res = read_corrections(tmp_path)
    assert [c.path.name for c in res.accepted] == ["a.npz", "d_other.npz"]
    assert [(p.name, q.name) for p, q in res.duplicates] == [("b_copy.npz", "a.npz"), ("c_again.npz", "a.npz")]
    assert content_hash(rig) != content_hash(rig.with_weights(w))
    moved = rig.copy()
    moved.vertices[0, 0] += 1e-3
    assert content_hash(moved) != content_hash(rig)


def test_missing_folder(tmp_path):
    with pytest.raises(Exception, match="no such corrections folder"):
        read_corrections(tmp_path / "nope")
