"""bpy <-> Rig conversion and file import/export through real Blender (bpy module)."""
from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import DATA_DIR, needs_data  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from backend.__main__ import main  # noqa: E402
from backend.blender import files, scene  # noqa: E402
from backend.io.npz import load_npz  # noqa: E402
from backend.rig import RigError, make_rig  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture(autouse=True)
def empty_session():
    files.reset_session()
    yield


def random_weights(rig, max_influences=4, seed=0):
    """(V, J) random weights with up to ``max_influences`` nonzero bones per row, rows sum to 1."""
    rng = np.random.default_rng(seed)
    V, J = rig.num_vertices, rig.num_bones
    w = np.zeros((V, J), np.float32)
    for i in range(V):
        k = rng.integers(1, min(max_influences, J) + 1)
        cols = rng.choice(J, size=k, replace=False)
        w[i, cols] = rng.dirichlet(np.ones(k)) + 0.01
    return w / w.sum(1, keepdims=True)


def matched(rig_a, rig_b):
    """Vertex map a -> b by position, bone map a -> b by name; asserts positions coincide."""
    d, vi = cKDTree(rig_b.vertices).query(rig_a.vertices)
    assert d.max() < 1e-5
    bi = np.array([rig_b.joint_names.index(n) for n in rig_a.joint_names])
    return vi, bi


def test_build_and_read_back_is_exact(small_rig):
    rig = small_rig(n_bones=4)
    rig = rig.with_weights(random_weights(rig))
    rig.is_deform[3] = False  # a control bone: kept, but its weights are not deform weights
    mesh_obj, arm_obj = scene.build_objects(rig, name="chain")
    assert mesh_obj.parent == arm_obj
    assert [m.type for m in mesh_obj.modifiers] == ["ARMATURE"] and mesh_obj.modifiers[0].object == arm_obj
    back = scene.read_rig(mesh_obj, arm_obj)
    np.testing.assert_allclose(back.vertices, rig.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, rig.faces)
    np.testing.assert_allclose(back.joints, rig.joints, atol=1e-6)
    np.testing.assert_allclose(back.tails, rig.tails, atol=1e-6)
    np.testing.assert_array_equal(back.parents, rig.parents)
    assert back.joint_names == rig.joint_names
    np.testing.assert_array_equal(back.is_deform, [True, True, True, False])
    expected = rig.weights.copy()
    expected[:, 3] = 0
    s = expected.sum(1, keepdims=True)
    expected = np.where(s > 0, expected / np.maximum(s, 1e-12), 0)
    np.testing.assert_allclose(back.weights, expected, atol=1e-6)


def permute_bones(rig, perm):
    """The same rig with its bones listed in order ``perm`` (new j = old perm[j])."""
    inv = np.argsort(perm)
    parents = np.where(rig.parents[perm] >= 0, inv[rig.parents[perm]], -1)
    return make_rig(rig.vertices, rig.faces, rig.joints[perm], parents, tails=rig.tails[perm],
                    joint_names=[rig.joint_names[p] for p in perm], is_deform=rig.is_deform[perm],
                    weights=None if rig.weights is None else rig.weights[:, perm])


def test_bones_listed_children_first_keep_their_weights(small_rig):
    rig = small_rig(n_bones=4)
    rig = permute_bones(rig.with_weights(random_weights(rig, seed=4)), [2, 0, 3, 1])
    mesh_obj, arm_obj = scene.build_objects(rig)
    assert list(arm_obj["autoskin_bone_names"]) == rig.joint_names
    back = scene.read_rig(mesh_obj, arm_obj)
    bi = np.array([back.joint_names.index(n) for n in rig.joint_names])
    np.testing.assert_allclose(back.weights[:, bi], rig.weights, atol=1e-6)
    np.testing.assert_allclose(back.joints[bi], rig.joints, atol=1e-6)
    np.testing.assert_array_equal(back.parents[bi], np.where(rig.parents >= 0, bi[rig.parents], -1))


def test_read_rig_gives_rest_pose_of_a_posed_armature(small_rig):
    rig = small_rig(n_bones=3)
    mesh_obj, arm_obj = scene.build_objects(rig)
    arm_obj.location = (1.0, 0.0, 0.0)  # object transforms do count: world space
    pb = arm_obj.pose.bones["bone_1"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (1.2, 0.0, 0.0)
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    posed = mesh_obj.evaluated_get(dg).to_mesh()
    co = np.empty(len(posed.vertices) * 3, np.float32)
    posed.vertices.foreach_get("co", co)
    mesh_obj.evaluated_get(dg).to_mesh_clear()
    assert np.abs(co.reshape(-1, 3) - rig.vertices).max() > 0.5  # the pose does move the mesh
    back = scene.read_rig(mesh_obj, arm_obj)
    np.testing.assert_allclose(back.vertices, rig.vertices + [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(back.joints, rig.joints + [1, 0, 0], atol=1e-5)
    assert mesh_obj.modifiers[0].show_viewport  # the modifier stack is restored


def test_write_weights_touches_only_given_groups(small_rig):
    rig = small_rig(n_bones=3)
    mesh_obj, arm_obj = scene.build_objects(rig)
    keep = mesh_obj.vertex_groups.new(name="keep_me")
    keep.add([0, 1, 2], 0.25, "REPLACE")
    V = rig.num_vertices
    new = np.zeros((V, 1), np.float32)
    new[5:10, 0] = 0.5
    scene.write_weights(mesh_obj, ["bone_1"], new)
    raw = scene.read_vertex_group_weights(
        mesh_obj.data, np.arange(len(mesh_obj.vertex_groups)), len(mesh_obj.vertex_groups))
    names = [g.name for g in mesh_obj.vertex_groups]
    np.testing.assert_allclose(raw[:, names.index("bone_1")], new[:, 0])
    np.testing.assert_allclose(raw[:, names.index("bone_0")], rig.weights[:, 0], atol=1e-6)
    np.testing.assert_allclose(raw[:3, names.index("keep_me")], 0.25)
    with pytest.raises(RigError, match="do not fit"):
        scene.write_weights(mesh_obj, ["bone_1"], np.zeros((V - 1, 1)))


def test_read_rig_merges_two_meshes_with_mesh_part(small_rig):
    a = small_rig(n_bones=3)
    b = small_rig(n_bones=3, segments=8, rings=6)
    b = make_rig(b.vertices + [0.0, 1.0, 0.0], b.faces, a.joints, a.parents, tails=a.tails,
                 joint_names=a.joint_names, weights=b.weights)
    body, arm = scene.build_objects(a, name="body")
    hat = bpy.data.objects.new("hat", scene.build_mesh_data("hat", b.vertices, b.faces))
    bpy.context.scene.collection.objects.link(hat)
    scene.write_weights(hat, [bone.name for bone in arm.data.bones], b.weights)
    hat.modifiers.new("Armature", "ARMATURE").object = arm
    merged = scene.read_rig([body, hat], arm)
    assert merged.num_vertices == a.num_vertices + b.num_vertices
    np.testing.assert_array_equal(np.bincount(merged.mesh_part), [a.num_vertices, b.num_vertices])
    assert merged.mesh_part_names == ["body", "hat"]
    np.testing.assert_allclose(merged.vertices[a.num_vertices:], b.vertices, atol=1e-6)
    np.testing.assert_array_equal(merged.faces[len(a.faces):], b.faces + a.num_vertices)
    np.testing.assert_allclose(merged.weights[a.num_vertices:], b.weights, atol=1e-6)
    # the file importer finds both skinned meshes and ignores an unrelated one
    other = bpy.data.objects.new("prop", scene.build_mesh_data("prop", b.vertices, b.faces))
    bpy.context.scene.collection.objects.link(other)
    found_arm, meshes = files.find_rig_objects()
    assert found_arm == arm and [m.name for m in meshes] == ["body", "hat"]


def test_glb_round_trip_keeps_weights_and_joints(small_rig, tmp_path):
    rig = small_rig(n_bones=5)
    rig = rig.with_weights(random_weights(rig, max_influences=4, seed=1))
    path = files.export_rig(rig, tmp_path / "chain.glb")
    assert path.is_file() and not list(tmp_path.glob(".*"))  # no temporary file left
    back = files.load_rig_file(path)
    vi, bi = matched(rig, back)
    np.testing.assert_allclose(back.weights[vi][:, bi], rig.weights, atol=1e-4)
    np.testing.assert_allclose(back.joints[bi], rig.joints, atol=1e-5)
    np.testing.assert_array_equal(back.parents[bi], np.where(rig.parents >= 0, bi[rig.parents], -1))


def test_blend_round_trip(small_rig, tmp_path):
    rig = small_rig(n_bones=4)
    rig = rig.with_weights(random_weights(rig, max_influences=3, seed=2))
    path = files.export_rig(rig, tmp_path / "chain.blend")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.blend"]  # no temporary or .blend1 file
    back = files.load_rig_file(path, weld=False)
    assert files.save_blend(rig.without_weights(), tmp_path / "bare.blend").is_file()
    with pytest.raises(RigError, match="no weights"):
        files.load_rig_file(tmp_path / "bare.blend")
    assert files.import_rig(tmp_path / "bare.blend").weights is None
    np.testing.assert_allclose(back.vertices, rig.vertices, atol=1e-6)
    np.testing.assert_allclose(back.weights, rig.weights, atol=1e-6)
    np.testing.assert_allclose(back.tails, rig.tails, atol=1e-6)
    assert back.joint_names == rig.joint_names


def test_weld_merges_seam_duplicates_only_with_equal_weights(small_rig):
    rig = small_rig(n_bones=2, segments=6, rings=4, cap_rings=2)
    V = rig.num_vertices
    # split vertex 7 into a copy used by half of its faces, and vertex 8 likewise but with other weights
    verts = np.concatenate([rig.vertices, rig.vertices[[7, 8]]])
    w = np.concatenate([rig.weights, rig.weights[[7]], rig.weights[[8]][:, ::-1]])
    faces = rig.faces.copy()
    for old, new in ((7, V), (8, V + 1)):
        users = np.flatnonzero((faces == old).any(1))[::2]
        faces[users] = np.where(faces[users] == old, new, faces[users])
    split = make_rig(verts, faces, rig.joints, rig.parents, tails=rig.tails, weights=w)
    welded = files.weld_vertices(split)
    assert welded.num_vertices == V + 1  # 7's copy merged, 8's copy kept (different weights)
    assert len(welded.faces) == len(faces)
    assert (welded.faces[(faces == V).any(1)] == 7).any(1).all()  # re-pointed to the original
    assert (welded.faces[(faces == V + 1).any(1)] == V).any(1).all()  # the kept copy, renumbered
    assert (welded.faces == 7).sum() == (rig.faces == 7).sum()


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(RigError, match="no such file"):
        files.load_rig_file(tmp_path / "missing.glb")
    bad = tmp_path / "broken.glb"
    bad.write_bytes(b"not a gltf at all" * 10)
    with pytest.raises(RigError, match="broken.glb"):
        files.load_rig_file(bad)
    bpy.context.scene.collection.objects.link(
        bpy.data.objects.new("lonely", scene.build_mesh_data("lonely", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])))
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "no_rig.blend"), copy=True)
    with pytest.raises(RigError, match="no_rig.blend: no armature"):
        files.load_rig_file(tmp_path / "no_rig.blend")


def test_convert_skips_broken_file_and_converts_the_rest(small_rig, tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    rig = small_rig(n_bones=3)
    files.export_rig(rig, src / "good.glb")
    files.export_rig(rig, src / "sub" / "good2.blend")
    (src / "broken.fbx").write_bytes(b"\x00garbage" * 20)
    (src / "notes.md").write_text("not an asset")
    # a RigNet rig: obj + rig_info
    with open(src / "r1.obj", "w") as fh:
        fh.writelines(f"v {x} {y} {z}\n" for x, y, z in rig.vertices)
        fh.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in rig.faces)
    with open(src / "r1.txt", "w") as fh:
        fh.writelines(f"joints {n} {x} {y} {z}\n" for n, (x, y, z) in zip(rig.joint_names, rig.joints))
        fh.write("root bone_0\nhier bone_0 bone_1\nhier bone_1 bone_2\n")
        fh.writelines(f"skin {i} bone_0 1.0\n" for i in range(rig.num_vertices))
    (src / "orphan.txt").write_text("joints a 0 0 0\nroot a\n")  # RigNet text without its .obj
    rc = main(["convert", str(src), str(dst)])
    out = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.npz")) == ["good.npz", "r1.npz", "sub/good2.npz"]
    assert "broken.fbx" in out and "orphan.txt" in out and "converted 3 of 5" in out
    got = load_npz(dst / "good.npz")
    vi, bi = matched(rig, got)
    np.testing.assert_allclose(got.weights[vi][:, bi], rig.weights, atol=1e-4)
    assert np.all(load_npz(dst / "r1.npz").weights[:, 0] == 1)
    # second run: existing outputs are skipped, not overwritten
    main(["convert", str(src), str(dst)])
    assert "exists" in capsys.readouterr().out


def test_fbx_import(small_rig, tmp_path):
    rig = small_rig(n_bones=4)
    rig = rig.with_weights(random_weights(rig, max_influences=4, seed=3))
    scene.build_objects(rig)
    bpy.ops.export_scene.fbx(filepath=str(tmp_path / "chain.fbx"), add_leaf_bones=False, bake_anim=False)
    back = files.load_rig_file(tmp_path / "chain.fbx")
    vi, bi = matched(rig, back)
    np.testing.assert_allclose(back.weights[vi][:, bi], rig.weights, atol=1e-4)
    np.testing.assert_allclose(back.joints[bi], rig.joints, atol=1e-5)


def test_modifiers_before_the_armature_are_applied(small_rig):
    rig = small_rig(n_bones=3)
    rig = rig.with_weights(random_weights(rig, seed=5))
    mesh_obj, arm_obj = scene.build_objects(rig)
    mirror = mesh_obj.modifiers.new("Mirror", "MIRROR")  # mirror in X, placed before the Armature modifier
    mirror.use_mirror_merge = False
    mesh_obj.modifiers.move(1, 0)
    assert [m.type for m in mesh_obj.modifiers] == ["MIRROR", "ARMATURE"]
    back = scene.read_rig(mesh_obj, arm_obj)
    assert back.num_vertices == 2 * rig.num_vertices
    mirrored = rig.vertices * [-1, 1, 1]
    d, vi = cKDTree(back.vertices[rig.num_vertices:]).query(mirrored)
    assert d.max() < 1e-5
    np.testing.assert_allclose(back.weights[rig.num_vertices:][vi], rig.weights, atol=1e-6)
    raw = scene.read_rig(mesh_obj, arm_obj, evaluated_before_armature=False)
    assert raw.num_vertices == rig.num_vertices


@needs_data
def test_real_character_glb_round_trip(tmp_path):
    # glTF-sourced, <= 4 influences
    rig = load_npz(DATA_DIR / "rigs/val/quaternius_fable__characters_Pirate_Female.npz")
    back = files.load_rig_file(files.export_rig(rig, tmp_path / "pirate.glb"))
    assert back.num_vertices == rig.num_vertices
    vi, bi = matched(rig, back)
    np.testing.assert_allclose(back.weights[vi][:, bi], rig.weights, atol=1e-4)
    np.testing.assert_allclose(back.joints[bi], rig.joints, atol=1e-5)
    np.testing.assert_array_equal(back.parents[bi], np.where(rig.parents >= 0, bi[rig.parents], -1))
