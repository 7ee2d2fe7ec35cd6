"""The Blender add-on, installed from the built extension zip into real Blender (bpy, headless):
registration, the main path and misuse. The fixtures and helpers here serve the other add-on test
modules too (test_addon_learned, test_addon_hardening, test_addon_progress).

bpy is one global Blender per process: the zip is built (no wheels: the venv has scipy and
onnxruntime) and installed once per module; each test starts from an empty scene.
Undo: ``bpy.ops.ed.undo`` cannot run in background mode (its poll needs a window), so the
operator's own all-or-nothing path (snapshot + restore when writing fails) is tested instead.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import build_addon  # noqa: E402
from backend.blender.scene import build_objects, read_vertex_group_weights  # noqa: E402
from backend.io.npz import load_npz  # noqa: E402
from conftest import make_capsule_chain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PKG = "bl_ext.user_default.autoskin"


# ----------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(scope="module")
def zip_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    return build_addon.build_platform("linux-x64", out, wheels=False, model=False).zip_path


@pytest.fixture(scope="module")
def addon(zip_path):
    """The installed, enabled extension package."""
    res = bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(zip_path),
                                                   enable_on_install=True, overwrite=True)
    assert res == {"FINISHED"}
    assert PKG in bpy.context.preferences.addons
    yield sys.modules[PKG]


@pytest.fixture
def fresh(addon):
    bpy.ops.wm.read_homefile(use_empty=True)
    assert PKG in bpy.context.preferences.addons
    yield addon


def make_scene(n_bones: int = 3, mesh_matrix=None, arm_offset=(0.0, 0.0, 0.0), non_deform: bool = False,
               last_name: str | None = None):
    """A capsule chain mesh (no groups, no modifier, no parent) and its armature, both selected,
    the armature active. ``mesh_matrix`` (4x4): the object transform, the mesh data moved by its
    inverse so the world-space shape stays the same; ``last_name``: the name of the chain's last bone."""
    rig = make_capsule_chain(n_bones, with_weights=False)
    if non_deform:  # an extra control bone beside the chain
        rig = make_capsule_chain(n_bones + 1, with_weights=False)
        rig.is_deform[-1] = False
    if last_name:
        rig.joint_names[-1] = last_name
    mesh, arm = build_objects(rig, with_weights=False)
    mesh.modifiers.clear()
    mesh.parent = None
    for g in list(mesh.vertex_groups):
        mesh.vertex_groups.remove(g)
    if mesh_matrix is not None:
        from mathutils import Matrix

        m = np.asarray(mesh_matrix, dtype=np.float64)
        local = (rig.vertices.astype(np.float64) - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
        mesh.data.vertices.foreach_set("co", local.astype(np.float32).ravel())
        mesh.data.update()
        mesh.matrix_world = Matrix(m.tolist())
    if any(arm_offset):
        arm.location = arm_offset
        from mathutils import Vector

        # keep the bones on the mesh in world space: move the armature data the other way
        bpy.context.view_layer.objects.active = arm
        bpy.ops.object.mode_set(mode="EDIT")
        for eb in arm.data.edit_bones:
            eb.head -= Vector(arm_offset)
            eb.tail -= Vector(arm_offset)
        bpy.ops.object.mode_set(mode="OBJECT")
    select(mesh, arm)
    bpy.context.view_layer.update()
    return mesh, arm, rig


def select(*objs, active=None):
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = active or (objs[-1] if objs else None)


def run(**kw) -> tuple[set, str]:
    """Call Auto Skin; (result, error message or '')."""
    kw.setdefault("mode", "GEODESIC")
    try:
        return bpy.ops.autoskin.auto_skin(**kw), ""
    except RuntimeError as exc:
        return {"CANCELLED"}, str(exc)


def weights(mesh, bone_names) -> np.ndarray:
    """(V, J) raw vertex-group weights for ``bone_names`` (0 where no group)."""
    idx = {n: j for j, n in enumerate(bone_names)}
    g2b = np.array([idx.get(g.name, -1) for g in mesh.vertex_groups], dtype=np.int64)
    return read_vertex_group_weights(mesh.data, g2b, len(bone_names))


def fingerprint() -> str:
    """Everything Auto Skin may change, for 'nothing changed' checks."""
    out = []
    for o in sorted(bpy.data.objects, key=lambda o: o.name):
        groups = []
        if o.type == "MESH":
            w = weights(o, [g.name for g in o.vertex_groups])
            groups = [(g.name, g.lock_weight, round(float(w[:, i].sum()), 6)) for i, g in enumerate(o.vertex_groups)]
        out.append((o.name, o.parent.name if o.parent else None,
                    [(m.type, getattr(getattr(m, "object", None), "name", None)) for m in o.modifiers],
                    groups, [round(x, 6) for row in o.matrix_world for x in row], sorted(o.keys())))
    return json.dumps(out)


def world_vertices(obj) -> np.ndarray:
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def tiny_model(tmp_path, seed: int) -> Path:
    """A random 3-candidate generator as ONNX (skips without torch)."""
    pytest.importorskip("backend.export.onnx_export")
    from conftest import export_tiny_model

    return export_tiny_model(tmp_path / "tiny.onnx", seed=seed, width=16, k_bones=3)


# ----------------------------------------------------------------------------- pure combine logic
def test_fill_remainder_known_answers(addon):
    combine = sys.modules[PKG + ".combine"]
    pred = np.array([[0.5, 0.3, 0.2, 0.0], [0.6, 0.4, 0.0, 0.0]], np.float32)
    kept = np.array([[0.0, 0.0, 0.0, 0.4], [0.0, 0.0, 0.0, 1.2]], np.float32)
    free = np.array([True, True, True, False])
    # unlimited: scaled to the 0.6 the kept bone leaves; a kept sum over 1 leaves nothing
    out = combine.fill_remainder(pred, kept, free, 0)
    np.testing.assert_allclose(out[0], [0.3, 0.18, 0.12, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[1], 0.0)
    # 3 influences, one used by the kept bone: 2 left; with t = the 3rd largest (0.2) a weight is kept
    # whole from 2t = 0.4 up and fades below: 0.5 stays, 0.3 keeps half, 0.2 goes -> [0.5, 0.15] / 0.65
    out = combine.fill_remainder(pred, kept, free, 3)
    np.testing.assert_allclose(out[0], np.array([0.5, 0.15, 0.0, 0.0]) / 0.65 * 0.6, atol=1e-6)
    # 1 influence and a kept bone: nothing left for the free bones
    np.testing.assert_allclose(combine.fill_remainder(pred, kept, free, 1)[0], 0.0)
    sel = np.array([True, False, False])
    empty = np.array([[1.0, 0], [0.5, 0.5], [0.0, 0.0]])
    assert combine.rows_to_write(3, sel, empty).tolist() == [True, False, True]
    assert combine.rows_to_write(3, None, empty).all()


# ----------------------------------------------------------------------------- registration
def test_registered_ui(fresh):
    op = bpy.types.AUTOSKIN_OT_auto_skin
    assert {"REGISTER", "UNDO"} <= set(op.bl_options)
    assert bpy.types.AUTOSKIN_PT_panel.bl_category == "Auto Skin"
    draw_funcs = bpy.types.VIEW3D_MT_object_parent.draw._draw_funcs
    assert any(getattr(f, "__module__", "").startswith(PKG) for f in draw_funcs)
    prefs = bpy.context.preferences.addons[PKG].preferences
    assert prefs.max_influences == 4 and prefs.mode == "LEARNED"


# ----------------------------------------------------------------------------- the main path
def test_auto_skin_geodesic_groups_modifier_parent(fresh):
    mesh, arm, rig = make_scene(4, non_deform=True)
    other = mesh.vertex_groups.new(name="unrelated")
    other.add([0, 1, 2], 0.7, "REPLACE")
    before = world_vertices(mesh)
    res, msg = run(max_influences=2)
    assert res == {"FINISHED"}, msg
    names = [b.name for b in arm.data.bones]
    deform = [b.name for b in arm.data.bones if b.use_deform]
    assert len(deform) == 4 and len(names) == 5
    assert {g.name for g in mesh.vertex_groups} == set(deform) | {"unrelated"}
    w = weights(mesh, deform)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    counts = (w > 0).sum(axis=1)
    assert counts.max() == 2 and counts.min() >= 1
    # each vertex's strongest bone is the chain segment it lies along
    z = rig.vertices[:, 2]
    inner = (z > 0.1) & (z < 2.3)  # 5 bones of 0.6 along z, the top one (2.4..3) is not deform
    seg = np.clip((z[inner] / 0.6).astype(int), 0, 3)
    assert (np.argmax(w[inner], axis=1) == seg).mean() > 0.9
    assert weights(mesh, ["unrelated"])[[0, 1, 2], 0].tolist() == pytest.approx([0.7] * 3)
    mods = [m for m in mesh.modifiers if m.type == "ARMATURE"]
    assert len(mods) == 1 and mods[0].object == arm
    assert mesh.parent == arm and mesh.parent_type == "OBJECT"
    np.testing.assert_allclose(world_vertices(mesh), before, atol=1e-5)
    # running again reuses the modifier and the groups
    assert run(max_influences=2)[0] == {"FINISHED"}
    assert len([m for m in mesh.modifiers if m.type == "ARMATURE"]) == 1
    assert len(mesh.vertex_groups) == 5


def test_pose_moves_the_mesh(fresh):
    mesh, arm, rig = make_scene(3)
    assert run()[0] == {"FINISHED"}
    rest = world_vertices(mesh)
    pb = arm.pose.bones["bone_2"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (math.radians(60), 0.0, 0.0)
    posed = world_vertices(mesh)
    moved = np.linalg.norm(posed - rest, axis=1)
    z = rig.vertices[:, 2]
    assert moved[z > 2.9].min() > 0.3  # the tip follows bone_2
    assert moved[z < 1.0].max() < 1e-4  # the base (bone_0) stays


def test_unapplied_transforms_are_honoured(fresh):
    mesh, arm, rig = make_scene(3)
    assert run()[0] == {"FINISHED"}
    base = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    bpy.ops.wm.read_homefile(use_empty=True)
    c, s = math.cos(0.7), math.sin(0.7)
    m = np.array([[2.0 * c, -2.0 * s, 0, 0.5], [2.0 * s, 2.0 * c, 0, -1.0], [0, 0, 2.0, 0.25], [0, 0, 0, 1]])
    mesh, arm, _ = make_scene(3, mesh_matrix=m, arm_offset=(0.3, -0.2, 0.1))
    assert run()[0] == {"FINISHED"}
    moved = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    assert np.abs(moved - base).max() < 0.05
    assert np.abs(moved - base).mean() < 2e-3


def test_locked_groups_stay_exact(fresh):
    mesh, arm, rig = make_scene(3)
    g = mesh.vertex_groups.new(name="bone_0")
    V = len(mesh.data.vertices)
    g.add(list(range(V)), 0.25, "REPLACE")
    g.lock_weight = True
    assert run(max_influences=4)[0] == {"FINISHED"}
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    assert np.all(w[:, 0] == np.float32(0.25))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert mesh.vertex_groups["bone_0"].lock_weight
    # without respecting locks the group is rewritten
    assert run(respect_locked=False)[0] == {"FINISHED"}
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    assert w[rig.vertices[:, 2] > 2.5, 0].max() == 0.0


def test_only_selected_vertices_and_unweighted_fill(fresh):
    mesh, arm, rig = make_scene(3)
    V = len(mesh.data.vertices)
    z = rig.vertices[:, 2]
    g = mesh.vertex_groups.new(name="bone_0")
    has_weight = z < 2.5  # the top has no weight at all
    g.add(np.flatnonzero(has_weight).tolist(), 1.0, "REPLACE")
    sel = (z > 1.2) & (z < 1.8)
    mesh.data.vertices.foreach_set("select", sel)
    assert run(only_selected_vertices=True)[0] == {"FINISHED"}
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    keep = ~sel & has_weight
    assert np.all(w[keep] == np.array([1.0, 0.0, 0.0], np.float32))
    assert np.all(w[sel, 1] > 0.3)  # re-predicted: the middle belongs to bone_1
    np.testing.assert_allclose(w[~has_weight].sum(axis=1), 1.0, atol=1e-5)  # filled in
    assert np.all(w[~has_weight, 2] > 0.5)
    assert V == len(w)


def test_only_selected_bones(fresh):
    mesh, arm, rig = make_scene(3)
    tent = make_capsule_chain(3).weights
    for j in range(3):
        g = mesh.vertex_groups.new(name=f"bone_{j}")
        for i in np.flatnonzero(tent[:, j] > 0):
            g.add([int(i)], float(tent[i, j]), "REPLACE")
    before = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    for pb in arm.pose.bones:
        pb.select = pb.name == "bone_2"
    assert run(only_selected_bones=True)[0] == {"FINISHED"}
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    np.testing.assert_array_equal(w[:, :2], before[:, :2])  # unselected bones untouched
    np.testing.assert_allclose(w[:, 2], np.clip(1.0 - before[:, :2].sum(axis=1), 0, 1), atol=1e-5)
    for pb in arm.pose.bones:
        pb.select = False
    res, msg = run(only_selected_bones=True)
    assert res == {"CANCELLED"} and "no selected deform bone" in msg


def test_preferences_give_the_defaults(fresh):
    mesh, arm, rig = make_scene(3)
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.max_influences, prefs.mode = 1, "GEODESIC"
    try:
        assert bpy.ops.autoskin.auto_skin() == {"FINISHED"}  # no arguments: the preferences decide
    finally:
        prefs.max_influences, prefs.mode = 4, "LEARNED"
    w = weights(mesh, ["bone_0", "bone_1", "bone_2"])
    assert (w > 0).sum(axis=1).max() == 1
    assert run(max_influences=3)[0] == {"FINISHED"}  # an explicit value wins
    assert (weights(mesh, ["bone_0", "bone_1", "bone_2"]) > 0).sum(axis=1).max() >= 2
    ext = sys.modules[PKG + "._bootstrap"]
    assert ext.default_model_path() == os.path.join(os.path.dirname(ext.__file__), "models", "autoskin.onnx")


def test_several_meshes_and_export_parts(fresh, tmp_path):
    mesh, arm, rig = make_scene(3)
    acc = make_capsule_chain(1, length=0.4, radius=0.1, with_weights=False)
    from backend.blender.scene import build_mesh_data

    extra = bpy.data.objects.new("zz_accessory", build_mesh_data("zz_accessory", acc.vertices + [0.45, 0, 2.3],
                                                                 acc.faces))
    bpy.context.scene.collection.objects.link(extra)
    select(mesh, extra, arm)
    assert run()[0] == {"FINISHED"}
    for obj in (mesh, extra):
        w = weights(obj, ["bone_0", "bone_1", "bone_2"])
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
        assert obj.parent == arm and any(m.type == "ARMATURE" and m.object == arm for m in obj.modifiers)
    assert weights(extra, ["bone_0", "bone_1", "bone_2"]).argmax(axis=1).tolist() == [2] * len(extra.data.vertices)
    assert bpy.ops.autoskin.export_corrections(directory=str(tmp_path)) == {"FINISHED"}
    out = load_npz(next(tmp_path.glob("*.npz")))
    assert out.mesh_part_names == [mesh.name, extra.name]
    assert np.bincount(out.mesh_part).tolist() == [len(mesh.data.vertices), len(extra.data.vertices)]
    assert out.extra["predicted_weights"].shape == (out.num_vertices, 3)


def test_edit_mode_bone_selection(fresh):
    mesh, arm, rig = make_scene(3)
    bpy.ops.object.mode_set(mode="EDIT")
    for eb in arm.data.edit_bones:
        eb.select = eb.select_head = eb.select_tail = eb.name == "bone_0"
    res, msg = run(only_selected_bones=True)
    bpy.ops.object.mode_set(mode="OBJECT")
    assert res == {"FINISHED"}, msg
    assert [g.name for g in mesh.vertex_groups] == ["bone_0"]
    np.testing.assert_allclose(weights(mesh, ["bone_0"])[:, 0], 1.0, atol=1e-6)


# ----------------------------------------------------------------------------- misuse: report, change nothing
def _no_armature():
    mesh, arm, _ = make_scene()
    select(mesh)


def _no_mesh():
    mesh, arm, _ = make_scene()
    select(arm)


def _no_deform():
    mesh, arm, _ = make_scene()
    for b in arm.data.bones:
        b.use_deform = False


def _empty_mesh():
    mesh, arm, _ = make_scene()
    empty = bpy.data.objects.new("empty_mesh", bpy.data.meshes.new("empty_mesh"))
    bpy.context.scene.collection.objects.link(empty)
    select(mesh, empty, arm)


def _edit_mode():
    mesh, arm, _ = make_scene()
    select(mesh)
    bpy.ops.object.mode_set(mode="EDIT")
    arm.select_set(True)


MISUSES = {
    "no armature": (_no_armature, {}, "no armature selected"),
    "no mesh": (_no_mesh, {}, "no mesh selected"),
    "no deform bones": (_no_deform, {}, "no deform bones"),
    "empty mesh": (_empty_mesh, {}, "is empty"),
    "edit mode": (_edit_mode, {}, "Edit Mode"),
    "missing model": (make_scene, {"mode": "LEARNED", "model_path": "/nonexistent/model.onnx"}, "model file not found"),
}


@pytest.mark.parametrize("case", sorted(MISUSES))
def test_misuse_reports_and_changes_nothing(fresh, case):
    setup, kw, expected = MISUSES[case]
    setup()
    before = fingerprint()
    res, msg = run(**kw)
    assert res == {"CANCELLED"}
    assert expected in msg
    assert fingerprint() == before
    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")


def test_mismatched_model_reports(fresh, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["weights"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("weights", TensorProto.FLOAT, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path / "not_autoskin.onnx"
    onnx.save(model, str(path))
    make_scene()
    before = fingerprint()
    res, msg = run(mode="LEARNED", model_path=str(path))
    assert res == {"CANCELLED"} and "not an Auto Skin model" in msg
    assert fingerprint() == before


def test_missing_onnxruntime_reports(fresh, monkeypatch):
    operators = sys.modules[PKG + ".operators"]
    monkeypatch.setattr(operators, "_PREDICTORS", {})
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    for name in (PKG + ".runtime.inference.predictor", PKG + ".runtime.inference.session"):
        if name in sys.modules:
            monkeypatch.delitem(sys.modules, name)
    make_scene()
    before = fingerprint()
    res, msg = run(mode="GEODESIC")
    assert res == {"CANCELLED"} and "runtime cannot be imported" in msg and "onnxruntime" in msg
    assert fingerprint() == before


def test_failure_while_writing_restores_everything(fresh, monkeypatch):
    mesh, arm, rig = make_scene(3)
    g = mesh.vertex_groups.new(name="bone_1")
    g.add([0, 5, 9], 0.5, "REPLACE")
    mesh.vertex_groups.new(name="notes").add([3], 1.0, "REPLACE")
    before = fingerprint()
    apply = sys.modules[PKG + ".apply"]

    def boom(obj, arm):
        raise OSError("disk on fire")

    monkeypatch.setattr(apply, "parent_keep_transform", boom)  # fails after groups and modifier are written
    res, msg = run()
    assert res == {"CANCELLED"} and "nothing was changed" in msg and "disk on fire" in msg
    assert fingerprint() == before
    assert weights(mesh, ["bone_1"])[[0, 5, 9], 0].tolist() == [0.5, 0.5, 0.5]


def test_failed_rerun_keeps_the_first_result_and_its_stored_prediction(fresh, monkeypatch):
    mesh, arm, rig = make_scene(3)
    assert run(max_influences=1)[0] == {"FINISHED"}
    ec = sys.modules[PKG + ".export_corrections"]
    names = ["bone_0", "bone_1", "bone_2"]
    first = ec.load_prediction(mesh, names)
    np.testing.assert_array_equal(first, weights(mesh, names))
    before = fingerprint()
    apply = sys.modules[PKG + ".apply"]
    real_write = apply.scene.write_weights

    def half_then_fail(obj, bone_names, w, replace=True, **kw):
        real_write(obj, bone_names[:1], w[:, :1], replace=replace, **kw)
        raise MemoryError("out of memory")

    monkeypatch.setattr(apply.scene, "write_weights", half_then_fail)
    res, msg = run(max_influences=3, smoothing=2)
    assert res == {"CANCELLED"} and "out of memory" in msg
    assert fingerprint() == before
    np.testing.assert_array_equal(weights(mesh, names), first)
    np.testing.assert_array_equal(ec.load_prediction(mesh, names), first)
