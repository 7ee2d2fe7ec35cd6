"""Procedural creatures: determinism, skeleton inside the body, counts and ranges, parts,
defects, the CLI, the unlabelled loader and the winding-number inside test."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from backend.__main__ import main
from backend.features.inside import is_inside, signed_volume, winding_number
from backend.io.npz import load_npz, save_npz
from backend.rig import RigError, validate_rig
from backend.synth import KINDS, generate, generate_creature, plan, sample_character, schedule
from backend.synth import primitives as P
from backend.synth.unlabelled import iter_unlabelled, strip_weights_folder


def _edge_face_counts(faces: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return counts


def _components(n: int, faces: np.ndarray) -> int:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[0]


@pytest.fixture(scope="module")
def run100():
    return list(generate(100, seed=11))


# ---------------------------------------------------------------- winding number / primitives
def test_winding_number_cube_inside_outside_and_orientation():
    v, f = P.box((1.0, 2.0, 3.0), np.eye(3), (0.5, 1.0, 2.0), n=3)
    pts = np.array([[1.0, 2.0, 3.0], [1.4, 2.9, 4.9], [1.6, 2.0, 3.0], [1.0, 2.0, 5.1], [9.0, 9.0, 9.0]])
    w = winding_number(v, f, pts)
    np.testing.assert_allclose(w, [1, 1, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(winding_number(v, f[:, ::-1], pts[:2]), [-1, -1], atol=1e-9)
    # two overlapping closed parts count twice; a face removed leaves about one half at its centre
    w2 = winding_number(np.concatenate([v, v]), np.concatenate([f, f + len(v)]), pts[:1])
    np.testing.assert_allclose(w2, [2.0], atol=1e-9)
    assert is_inside(v, f, pts).tolist() == [True, True, False, False, False]


def test_primitives_are_closed_and_have_the_right_volume():
    for mesh, vol in [(P.box((0, 0, 0), np.eye(3), (1.0, 2.0, 0.5), 4), 8.0),
                      (P.ellipsoid((0, 0, 0), np.eye(3), (1.0, 1.0, 1.0), 12), 4 / 3 * np.pi),
                      (P.cylinder((0, 0, 0), np.eye(3), (1.0, 1.0, 1.0), 12), 2 * np.pi),
                      (P.torus((0, 0, 0), np.eye(3), 2.0, 0.5, 64, 24), 2 * np.pi ** 2 * 2.0 * 0.25)]:
        v, f = mesh
        assert (_edge_face_counts(f) == 2).all()
        assert signed_volume(v, f) == pytest.approx(vol, rel=0.05)


# ---------------------------------------------------------------- determinism
def test_same_seed_same_arrays_and_creatures_are_independent(tmp_path):
    a = generate_creature(5, 3, detail=0.3)
    b = generate_creature(5, 3, detail=0.3)
    save_npz(a, tmp_path / "a.npz", include_weights=False)
    save_npz(b, tmp_path / "b.npz", include_weights=False)
    with np.load(tmp_path / "a.npz") as da, np.load(tmp_path / "b.npz") as db:
        assert sorted(da.files) == sorted(db.files)
        assert "weights" not in da.files and str(da["kind"]) in KINDS
        for k in da.files:
            assert da[k].tobytes() == db[k].tobytes(), k
    c = generate_creature(6, 3, detail=0.3)
    assert c.vertices.shape != a.vertices.shape or not np.array_equal(c.vertices, a.vertices)
    # the skeleton stage alone gives the same bones as the full creature
    p = plan(5, 3)
    heads = np.asarray(p.builder.heads, np.float32)
    assert heads.shape[0] <= a.num_bones
    assert list(p.builder.unique_names()) == a.joint_names[: heads.shape[0]]


# ---------------------------------------------------------------- counts and ranges
def test_run_of_100_covers_kinds_ranges_and_validates(run100):
    kinds = [str(r.extra["kind"]) for r in run100]
    assert set(kinds) == set(KINDS)
    assert kinds == [schedule(11, i)[0] for i in range(100)]
    V = np.array([r.num_vertices for r in run100])
    J = np.array([r.num_bones for r in run100])
    assert V.min() >= 1000 and V.max() <= 20000
    assert J.min() == 2 and J.max() >= 150
    for r in run100:
        validate_rig(r)
        assert r.weights is None
        assert len(set(r.joint_names)) == r.num_bones
        assert (r.parents < 0).sum() >= 1
    # some creatures carry control bones, separate parts, defects, other units
    assert any((~r.is_deform).any() for r in run100)
    assert any(r.mesh_part_names for r in run100)
    assert any(str(r.extra["defects"]) for r in run100)
    assert {float(r.extra["unit_scale"]) for r in run100} >= {1.0, 100.0}
    heights = [np.ptp(r.vertices, axis=0).max() / float(r.extra["unit_scale"]) for r in run100]
    assert 0.25 <= min(heights) and max(heights) <= 3.5


def test_every_joint_is_inside_its_mesh(run100):
    # a spread over kinds (every 8th: the kinds take turns) plus the largest and the defective ones
    for r in run100[::8] + [r for r in run100 if r.num_bones >= 150 or str(r.extra["defects"])][:6]:
        w = winding_number(r.vertices, r.faces, r.joints)
        assert w.min() > 0.5, (r.name, r.joint_names[int(np.argmin(w))], float(w.min()))
        wt = winding_number(r.vertices, r.faces, r.tails[r.is_deform])
        assert wt.min() > 0.5, (r.name, float(wt.min()))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_with_parts_defects_and_control_bones(kind):
    r = generate_creature(2, 40, kind=kind, detail=0.4, accessories={"eyes", "hat", "armour", "teeth"},
                          defects=True, control_bones=True, unit_scale=0.01)
    validate_rig(r)
    assert str(r.extra["kind"]) == kind
    w = winding_number(r.vertices, r.faces, r.joints)
    assert w.min() > 0.5, (r.name, r.joint_names[int(np.argmin(w))], float(w.min()))
    assert np.ptp(r.vertices, axis=0).max() < 0.04  # x0.01 units
    counts = _edge_face_counts(r.faces)
    d = str(r.extra["defects"])
    assert d
    if "nonmanifold" in d:
        assert (counts >= 3).any()
    if "holes" in d:
        assert (counts == 1).any()
    if "duplicates" in d:
        assert len(np.unique(np.sort(r.faces, axis=1), axis=0)) < len(r.faces)
    if kind != "robot" and r.mesh_part_names:
        assert _components(r.num_vertices, r.faces) >= len(r.mesh_part_names)


def test_sample_character_is_a_humanoid_with_separate_eyes():
    r = sample_character()
    validate_rig(r)
    assert str(r.extra["kind"]) == "humanoid"
    assert 20 <= r.num_bones <= 32 and 5000 <= r.num_vertices <= 10000
    assert r.is_deform.all() and str(r.extra["defects"]) == ""
    assert r.mesh_part_names == ["body", "eyes"]
    eyes = r.mesh_part == 1
    eye_faces = r.faces[eyes[r.faces].all(axis=1)]
    assert _components(r.num_vertices, eye_faces) - (~eyes).sum() == 2
    assert 1.6 < np.ptp(r.vertices[:, 2]) < 1.9
    assert r.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-6)
    w = winding_number(r.vertices, r.faces, r.joints)
    assert w.min() > 0.5


# ---------------------------------------------------------------- CLI + unlabelled loader
def test_cli_writes_deterministic_files_manifest_and_sheet(tmp_path):
    for d in ("a", "b"):
        assert main(["synth", "--count", "3", "--seed", "4", "--detail", "0.3", "--out", str(tmp_path / d)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    for r in rows:
        ra, rb = load_npz(tmp_path / "a" / r["file"]), load_npz(tmp_path / "b" / r["file"])
        assert ra.weights is None and str(ra.extra["kind"]) == r["kind"] and ra.num_vertices == r["V"]
        assert np.array_equal(ra.vertices, rb.vertices) and np.array_equal(ra.faces, rb.faces)
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "--count", "2", "--seed", "4", "--detail", "0.2", "--sheet", str(sheet)]) == 0
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["synth", "--count", "2", "--kind", "dragon", "--out", str(tmp_path / "c")]) == 2


def test_iter_unlabelled_and_strip_weights(tmp_path, small_rig):
    src = tmp_path / "src"
    save_npz(small_rig(3), src / "one.npz")
    save_npz(small_rig(4), src / "sub" / "two.npz")
    rigs = list(iter_unlabelled([src]))
    assert [r.num_bones for r in rigs] == [3, 4] and all(r.weights is None for r in rigs)
    written = strip_weights_folder(src, tmp_path / "dst")
    assert len(written) == 2
    with np.load(tmp_path / "dst" / "sub" / "two.npz") as d:
        assert "weights" not in d.files and d["joints"].shape == (4, 3)
    (src / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(RigError, match="bad.npz"):
        list(iter_unlabelled(src))
    assert len(list(iter_unlabelled(src, skip_bad=True))) == 2
    with pytest.raises(RigError, match="missing"):
        list(iter_unlabelled(tmp_path / "missing"))
