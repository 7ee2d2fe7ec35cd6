"""Hardening of the add-on (issue 25, items 11-14 and the smaller ones), checked on the installed
extension zip in real Blender (bpy, headless), with the fixtures and helpers of ``test_addon``.

Weights are read back from the vertex groups; the re-enable case runs in a fresh Python where
only the zip's vendored runtime can be imported.
"""
from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from backend.io.npz import load_npz  # noqa: E402
from conftest import make_capsule_chain, run_fresh_blender  # noqa: E402
from test_addon import (PKG, addon, fingerprint, fresh, make_scene, run, select, weights,  # noqa: E402,F401
                        world_vertices, zip_path)

NAMES = ["bone_0", "bone_1", "bone_2"]


# ----------------------------------------------------------------------------- 11: disable, enable
def test_disable_then_enable_keeps_working(zip_path, tmp_path):
    """Disable and enable the installed add-on twice in one session: Auto Skin and Export still run on
    the zip's own runtime, and an error raised inside the runtime still gets its clean message."""
    script = tmp_path / "cycle.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        import bpy
        PKG = {PKG!r}
        assert not any(os.path.isdir(os.path.join(p, "backend")) for p in sys.path if p), "repo on sys.path"
        bpy.ops.extensions.package_install_files(repo="user_default", filepath={str(zip_path)!r},
                                                 enable_on_install=True)
        for _ in range(2):
            bpy.ops.preferences.addon_disable(module=PKG)
            assert "backend" not in sys.modules
            assert not any(n.startswith(PKG + ".runtime") for n in sys.modules), "runtime left loaded"
            bpy.ops.preferences.addon_enable(module=PKG)
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0)
        mesh = bpy.context.object
        bpy.ops.object.armature_add(location=(0, 0, -0.5))
        mesh.select_set(True)
        out = {{"skin": sorted(bpy.ops.autoskin.auto_skin(mode="GEODESIC"))}}
        out["groups"] = [g.name for g in mesh.vertex_groups]
        out["export"] = sorted(bpy.ops.autoskin.export_corrections(directory={str(tmp_path / "out")!r}))
        out["files"] = sorted(os.listdir({str(tmp_path / "out")!r}))
        bad = {str(tmp_path / "bad.onnx")!r}
        open(bad, "wb").write(b"not a model")
        try:
            bpy.ops.autoskin.auto_skin(mode="LEARNED", model_path=bad)
            out["bad_model"] = "no error"
        except RuntimeError as exc:
            out["bad_model"] = str(exc)
        kc = bpy.context.window_manager.keyconfigs.addon
        out["ctrl_p"] = sorted(km.name for km in kc.keymaps for k in km.keymap_items
                               if k.idname == "wm.call_menu" and k.properties.name == "AUTOSKIN_MT_parent_set")
        out["runtime"] = sys.modules[PKG + ".runtime"].__file__
        out["same_error_class"] = sys.modules[PKG + ".operators"].RigError is sys.modules[PKG + ".runtime.rig"].RigError
        print(json.dumps(out))
    """))
    out = run_fresh_blender(script, tmp_path, timeout=180)
    assert out["skin"] == ["FINISHED"] and out["groups"] == ["Bone"]
    assert out["export"] == ["FINISHED"] and len(out["files"]) == 1
    assert "/extensions/user_default/autoskin/runtime/" in out["runtime"]
    assert out["same_error_class"]
    assert out["ctrl_p"] == ["Object Mode", "Pose"]  # one Ctrl+P entry each, none left over from the cycles
    assert "not a readable ONNX model" in out["bad_model"] and "Auto Skin failed" not in out["bad_model"]


# ----------------------------------------------------------------------------- 12: no weight dust
def _paint_full_rows(mesh, rig) -> np.ndarray:
    """Paint bone_0 + bone_1 = 1 (float32, so their sum is off by a rounding step) on the lower
    part, bone_1 / bone_2 halves in the middle and bone_2 alone on top; returns the (V,) bool rows
    the first two bones fill."""
    z = rig.vertices[:, 2]
    rng = np.random.default_rng(0)
    a = rng.uniform(0.05, 0.95, len(z)).astype(np.float32)
    low, mid, top = z < 1.2, (z >= 1.2) & (z < 1.8), z >= 1.8
    cols = np.zeros((len(z), 3), np.float32)
    cols[low, 0], cols[low, 1] = a[low], (np.float32(1.0) - a[low])
    cols[mid, 1], cols[mid, 2] = 0.5, 0.5
    cols[top, 2] = 1.0
    for j, name in enumerate(NAMES):
        g = mesh.vertex_groups.new(name=name)
        for i in np.flatnonzero(cols[:, j] > 0):
            g.add([int(i)], float(cols[i, j]), "REPLACE")
    return low


@pytest.mark.parametrize("how", ["selected bone", "locked groups"])
def test_kept_groups_that_fill_a_row_leave_no_dust(fresh, how):
    """Re-weighting bone_2 alone (the only selected bone, or the only unlocked group) must not add it,
    even with a tiny weight, to vertices whose kept groups already sum to 1."""
    mesh, arm, rig = make_scene(3)
    full = _paint_full_rows(mesh, rig)
    before = weights(mesh, NAMES)
    kept_sum = before[:, :2].astype(np.float64).sum(axis=1)
    assert (kept_sum[full] < 1.0).sum() > 20  # float32 rounding leaves 1 - sum > 0 on these rows
    if how == "selected bone":
        for pb in arm.pose.bones:
            pb.select = pb.name == "bone_2"
        res, msg = run(only_selected_bones=True)
    else:
        for name in ("bone_0", "bone_1"):
            mesh.vertex_groups[name].lock_weight = True
        res, msg = run(respect_locked=True)
    assert res == {"FINISHED"}, msg
    group = mesh.vertex_groups["bone_2"].index
    members = np.array([any(g.group == group for g in v.groups) for v in mesh.data.vertices])
    assert not members[full].any(), f"{int(members[full].sum())} vertices gained bone_2"
    w = weights(mesh, NAMES)
    np.testing.assert_array_equal(w[:, :2], before[:, :2])
    np.testing.assert_allclose(w[~full].sum(axis=1), 1.0, atol=1e-5)
    assert w[~full, 2].min() >= 0.5 - 1e-6


# ----------------------------------------------------------------------------- 13: the record of fixes
def _changed(path) -> np.ndarray:
    """(V,) bool vertices the fine-tuning marks changed in an exported file (docs/finetune.md)."""
    rig = load_npz(path)
    return np.abs(rig.weights - rig.extra["predicted_weights"]).sum(axis=1) > 0.05


@pytest.mark.parametrize("partial", ["selected vertices", "selected bone"])
def test_partial_rerun_keeps_the_record_of_hand_fixes(fresh, tmp_path, partial):
    """Auto Skin, hand-fix 40 vertices, re-run on other vertices (or on one other bone), export: the
    40 fixed vertices are still marked changed, and nothing else is."""
    mesh, arm, rig = make_scene(3)
    assert run()[0] == {"FINISHED"}
    z = rig.vertices[:, 2]
    if partial == "selected vertices":
        fixed = np.flatnonzero(z > 2.5)[:40]  # the tip, moved to bone_0
        to, off = "bone_0", ("bone_1", "bone_2")
    else:
        fixed = np.flatnonzero(z < 0.9)[:40]  # the base, moved to bone_1 (bone_2 has nothing there)
        to, off = "bone_1", ("bone_0", "bone_2")
    assert len(fixed) == 40
    for name in off:
        mesh.vertex_groups[name].remove(fixed.tolist())
    mesh.vertex_groups[to].add(fixed.tolist(), 1.0, "REPLACE")
    if partial == "selected vertices":
        sel = np.zeros(len(z), bool)
        sel[np.flatnonzero((z > 1.2) & (z < 1.8))[:10]] = True
        mesh.data.vertices.foreach_set("select", sel)
        res, msg = run(only_selected_vertices=True)
    else:
        for pb in arm.pose.bones:
            pb.select = pb.name == "bone_2"
        res, msg = run(only_selected_bones=True)
    assert res == {"FINISHED"}, msg
    assert bpy.ops.autoskin.export_corrections(directory=str(tmp_path)) == {"FINISHED"}
    changed = _changed(next(tmp_path.glob("*.npz")))
    assert changed[fixed].all(), f"{int(changed[fixed].sum())} of 40 fixed vertices marked changed"
    assert int(changed.sum()) == 40


# ----------------------------------------------------------------------------- 14: modifier placement
def _half_body(stack: list):
    """The left arm of a half body (a capsule along +x from x=0.15) with the modifiers ``stack``,
    and an armature with upper/fore arm bones on both sides; both selected, the armature active."""
    from backend.blender.scene import build_mesh_data

    chain = make_capsule_chain(2, length=1.2, radius=0.15, with_weights=False)
    v = chain.vertices.astype(np.float64)
    verts = np.stack([v[:, 2] + 0.3, v[:, 1], -v[:, 0]], axis=1)  # +z -> +x, a proper rotation
    mesh = bpy.data.objects.new("half", build_mesh_data("half", verts, chain.faces))
    bpy.context.scene.collection.objects.link(mesh)
    for kind in stack:
        m = mesh.modifiers.new(kind.title(), kind)
        if kind == "MIRROR":
            m.use_mirror_vertex_groups = True
    arm = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    bpy.context.scene.collection.objects.link(arm)
    select(arm)
    bpy.ops.object.mode_set(mode="EDIT")
    for side, sx in (("L", 1.0), ("R", -1.0)):
        upper = arm.data.edit_bones.new(f"upper.{side}")
        upper.head, upper.tail = (0.3 * sx, 0.0, 0.0), (0.9 * sx, 0.0, 0.0)
        fore = arm.data.edit_bones.new(f"fore.{side}")
        fore.head, fore.tail = (0.9 * sx, 0.0, 0.0), (1.5 * sx, 0.0, 0.0)
        fore.parent, fore.use_connect = upper, True
    bpy.ops.object.mode_set(mode="OBJECT")
    select(mesh, arm)
    return mesh, arm


@pytest.mark.parametrize("stack", [["MIRROR", "SUBSURF"], ["LATTICE", "MIRROR"], ["SUBSURF"]])
def test_armature_modifier_goes_where_ctrl_p_puts_it(fresh, stack):
    mesh, arm = _half_body(stack)
    twin = mesh.copy()
    bpy.context.scene.collection.objects.link(twin)
    select(twin, arm)
    assert bpy.ops.object.parent_set(type="ARMATURE_NAME") == {"FINISHED"}
    select(mesh, arm)
    res, msg = run()
    assert res == {"FINISHED"}, msg
    assert [m.type for m in mesh.modifiers] == [m.type for m in twin.modifiers] == stack + ["ARMATURE"]


def test_mirrored_half_body_poses_one_arm_alone(fresh):
    """With an unapplied Mirror, posing the left forearm moves the left hand and leaves the mirrored
    right arm where it is (the Armature modifier comes after the Mirror)."""
    mesh, arm = _half_body(["MIRROR"])
    res, msg = run()
    assert res == {"FINISHED"}, msg
    assert np.all(weights(mesh, ["upper.R", "fore.R"]) == 0.0)  # the half body lies on the left
    rest = world_vertices(mesh)
    assert len(rest) == 2 * len(mesh.data.vertices)
    pb = arm.pose.bones["fore.L"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0.0, 0.0, math.radians(45))
    moved = np.linalg.norm(world_vertices(mesh) - rest, axis=1)
    assert moved[rest[:, 0] > 1.3].min() > 0.1  # the left hand follows fore.L
    assert moved[rest[:, 0] < 0.0].max() < 1e-5  # the mirrored right arm stays


# ----------------------------------------------------------------------------- smaller items
def test_only_selected_vertices_with_nothing_selected_reports(fresh):
    mesh, arm, rig = make_scene(3)
    mesh.data.vertices.foreach_set("select", np.zeros(len(mesh.data.vertices), bool))
    before = fingerprint()
    res, msg = run(only_selected_vertices=True)
    assert res == {"CANCELLED"} and "no vertex" in msg and "Only Selected Vertices" in msg
    assert fingerprint() == before


def _reports(text: str) -> list:
    """The operator reports Blender printed (headless, reports go to stdout)."""
    return [ln for ln in text.splitlines() if ln.startswith(("Info: ", "Warning: ", "Error: "))]


def test_cuda_fallback_is_reported_in_the_status_bar_once(fresh, tmp_path, capfd):
    """Device CUDA on an onnxruntime without CUDA runs on the CPU and says so as the last report of the
    run (the one the status bar shows); the cached session does not repeat it."""
    from test_addon import tiny_model

    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    path = tiny_model(tmp_path, seed=0)
    mesh, arm, rig = make_scene(3)
    capfd.readouterr()
    res, msg = run(mode="LEARNED", model_path=str(path), device="CUDA")
    assert res == {"FINISHED"}, msg
    first = _reports(capfd.readouterr().out)
    assert first[-1].startswith("Warning: Auto Skin:") and "CUDA" in first[-1] and "CPU" in first[-1]
    assert sum("CUDA" in ln for ln in first) == 1
    select(mesh, arm)
    assert run(mode="LEARNED", model_path=str(path), device="CUDA")[0] == {"FINISHED"}
    again = _reports(capfd.readouterr().out)
    assert again and not any(ln.startswith("Warning:") for ln in again)


def test_each_setting_is_one_value(fresh, tmp_path):
    """No "Set X" toggles: a value given to the operator, or set in the preferences, is used; the
    default (below the setting's range) keeps the model's own setting."""
    from backend.inference.predictor import Predictor
    from conftest import rewrite_meta
    from test_addon import tiny_model

    props = bpy.ops.autoskin.auto_skin.get_rna_type().properties.keys()
    assert "smoothing" in props and [p for p in props if p.startswith("set_")] == []
    path = rewrite_meta(tiny_model(tmp_path, seed=2), tmp_path / "smooth.onnx", smooth="3")
    mesh, arm, rig = make_scene(3)
    pred = Predictor(path, device="cpu")
    expect = {s: pred.predict(rig, max_influences=0, prune=0.0, smooth=s).weights for s in (3, 0)}
    assert np.abs(expect[3] - expect[0]).max() > 1e-3
    kw = dict(mode="LEARNED", model_path=str(path), device="CPU", max_influences=0, prune_threshold=0.0)
    prefs = bpy.context.preferences.addons[PKG].preferences
    label = sys.modules[PKG + ".preferences"].option_label
    assert label(prefs, "smoothing") == "Smoothing (model's own)" and label(prefs, "mode") is None
    op_props = bpy.ops.autoskin.auto_skin.get_rna_type()
    assert op_props.properties["sharpness"].default < 1.0 <= op_props.properties["sharpness"].hard_max
    for given, pref, smooth in (({}, None, 3), ({"smoothing": 0}, None, 0), ({}, 0, 0)):
        if pref is not None:
            prefs.smoothing = pref
        try:
            select(mesh, arm)
            res, msg = run(**kw, **given)
        finally:
            prefs.smoothing = -1
        assert res == {"FINISHED"}, msg
        np.testing.assert_allclose(weights(mesh, NAMES), expect[smooth], atol=1e-3)


def test_saved_preferences_with_set_toggles_still_load(fresh):
    """Preferences saved with "Set X" toggles load with the same effect: a value whose toggle was off
    (or never stored) becomes the model's own setting, a toggled one is kept."""
    import addon_utils

    prefs = bpy.context.preferences.addons[PKG].preferences
    stored = sys.modules[PKG + ".preferences"].stored_values(prefs)
    del stored["settings_version"]  # saved by the version with toggles
    stored["set_smoothing"], prefs.smoothing = False, 4
    stored["set_sharpness"], prefs.sharpness = True, 2.5
    stored["set_network_share"], prefs.network_share = True, 0.3
    prefs.diffusion = 1.0  # its toggle never stored: it was off
    try:
        addon_utils.disable(PKG, default_set=False)
        addon_utils.enable(PKG, default_set=False)
        prefs = bpy.context.preferences.addons[PKG].preferences
        got = {k: round(getattr(prefs, k), 4) for k in ("smoothing", "sharpness", "network_share", "diffusion")}
        assert got == {"smoothing": -1, "sharpness": 2.5, "network_share": 0.3, "diffusion": -1.0}
        stored = sys.modules[PKG + ".preferences"].stored_values(prefs)
        assert not [k for k in stored.keys() if k.startswith("set_")]
        assert prefs.settings_version == 2
    finally:
        prefs.smoothing, prefs.sharpness, prefs.network_share, prefs.diffusion = -1, 0.0, -1.0, -1.0


def test_prune_tooltip_says_weights_fade(fresh):
    """The runtime fades small weights out (removed below PRUNE_FADE_START x the threshold); the
    tooltip says so instead of 'removed'."""
    from backend.inference.postprocess import PRUNE_FADE_START

    text = bpy.ops.autoskin.auto_skin.get_rna_type().properties["prune_threshold"].description
    assert "fade" in text and f"{PRUNE_FADE_START:.0%}".replace("%", " %") in text
    assert text == bpy.context.preferences.addons[PKG].preferences.bl_rna.properties["prune_threshold"].description


class _Layout:
    """Records ``prop`` calls of a draw function."""

    def __init__(self):
        self.props, self.ops, self.use_property_split = [], [], False

    def prop(self, data, name, text=None, **kw):
        self.props.append((name, text))

    def column(self, **kw):
        return self

    def separator(self, **kw):
        pass

    def operator(self, idname, text=None, **kw):
        props = type("Props", (), {})()
        self.ops.append((idname, text, props))
        return props

    def label(self, **kw):
        pass


class _Drawn:
    """Stands in for an operator or the preferences in a draw call: their values, a recording layout."""

    def __init__(self, values):
        self.layout, self.properties, self._values = _Layout(), values, values

    def __getattr__(self, name):
        return getattr(self._values, name)


def test_redo_panel_and_preferences_draw_one_control_per_setting(fresh):
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.sharpness = 2.0
    try:
        for cls in (bpy.types.AUTOSKIN_OT_auto_skin, type(prefs)):
            drawn = _Drawn(prefs)
            cls.draw(drawn, bpy.context)
            labels = dict(drawn.layout.props)
            assert labels["smoothing"] == "Smoothing (model's own)" and labels["sharpness"] is None
            assert not [n for n in labels if n.startswith("set_")]
    finally:
        prefs.sharpness = 0.0


def test_ctrl_p_offers_auto_skin(fresh):
    """Ctrl+P (Object and Pose Mode) opens the add-on's copy of Blender's armature popup, with Auto Skin
    after With Automatic Weights, when an armature is active and a mesh selected; otherwise the key
    passes through to Blender's own popup."""
    menu = bpy.types.AUTOSKIN_MT_parent_set
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    for name in ("Object Mode", "Pose"):
        items = [k for k in keyconfig.keymaps[name].keymap_items if k.idname == "wm.call_menu"
                 and k.properties.name == menu.bl_idname]
        assert len(items) == 1 and items[0].type == "P" and items[0].ctrl and not (items[0].shift or items[0].alt)
    mesh, arm, rig = make_scene(3)
    assert menu.poll(bpy.context)
    drawn = _Drawn(None)
    menu.draw(drawn, bpy.context)
    texts = [text.strip() for _, text, _ in drawn.layout.ops]
    assert texts == ["Object", "Object (Keep Transform)", "Object (Without Inverse)",
                     "Object (Keep Transform Without Inverse)", "Armature Deform", "With Empty Groups",
                     "With Envelope Weights", "With Automatic Weights", "With Auto Skin Weights", "Bone",
                     "Bone Relative"]
    idname, _, _ = drawn.layout.ops[texts.index("With Auto Skin Weights")]
    assert idname == "autoskin.auto_skin"
    assert [p.type for i, _, p in drawn.layout.ops if i == "object.parent_set"][2:] == [
        "ARMATURE", "ARMATURE_NAME", "ARMATURE_ENVELOPE", "ARMATURE_AUTO", "BONE", "BONE_RELATIVE"]
    bpy.ops.object.mode_set(mode="POSE")
    assert menu.poll(bpy.context)
    bpy.ops.object.mode_set(mode="OBJECT")
    for objs in ((mesh,), (arm,)):  # a mesh active, or no mesh selected: Blender's own popup
        select(*objs)
        assert not menu.poll(bpy.context)
        assert bpy.ops.wm.call_menu(name=menu.bl_idname) == {"CANCELLED", "PASS_THROUGH"}
