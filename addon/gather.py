"""Read what Auto Skin works on from the scene, refusing every misuse with a clear message.

Nothing here changes the scene (modifier visibility is toggled for the evaluation and restored).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np

from backend.blender.scene import modifiers_hidden_from, read_group_members, read_rig, read_vertex_group_weights
from backend.rig import Rig, RigError, validate_rig


class UsageError(RigError):
    """The user's selection or scene does not allow Auto Skin; the message says what to do."""


@dataclass
class SkinTarget:
    """The armature and meshes of one Auto Skin call, read into arrays.

    rig: merged meshes (world space, pre-armature) + all bones, ``rig.is_deform`` = free bones.
    raw: (V, J) float32 raw vertex-group weights of all deform bones (unnormalised).
    deform: (J,) bool deform bones; free: (J,) bool bones to rewrite; kept = deform & ~free.
    selected: (V,) bool vertex selection (object mode flags).
    counts: vertices per mesh, in ``meshes`` order.
    members: per mesh, every vertex-group membership as read (``scene.read_group_members``: vertex,
    group index, weight), reused for the snapshot and for clearing the groups that get rewritten.
    """

    arm: bpy.types.Object
    meshes: list
    rig: Rig
    raw: np.ndarray
    deform: np.ndarray
    free: np.ndarray
    selected: np.ndarray
    counts: list
    bone_names: list
    warnings: list = field(default_factory=list)
    members: list = field(default_factory=list)

    @property
    def kept(self) -> np.ndarray:
        return self.deform & ~self.free


def pick_objects(context) -> tuple[bpy.types.Object, list]:
    """(armature, meshes) from the selection; the active object wins when several armatures are selected."""
    selected = list(context.selected_objects)
    active = context.active_object
    if active is not None and active not in selected and active.type == "ARMATURE":
        selected.append(active)
    arms = [o for o in selected if o.type == "ARMATURE"]
    meshes = [o for o in selected if o.type == "MESH"]
    if not arms:
        raise UsageError("Auto Skin: no armature selected. Select the mesh(es), then the armature")
    if len(arms) > 1:
        if active is None or active.type != "ARMATURE":
            raise UsageError(f"Auto Skin: {len(arms)} armatures selected; make the one to use active")
        arm = active
    else:
        arm = arms[0]
    if not meshes:
        raise UsageError("Auto Skin: no mesh selected. Select the mesh(es) to skin together with the armature")
    for obj in meshes:
        if obj.mode == "EDIT" or obj.data.is_editmode:
            raise UsageError(f"Auto Skin: mesh '{obj.name}' is in Edit Mode; switch to Object Mode first")
        if len(obj.data.vertices) == 0:
            raise UsageError(f"Auto Skin: mesh '{obj.name}' is empty (no vertices)")
        if len(obj.data.polygons) == 0:
            raise UsageError(f"Auto Skin: mesh '{obj.name}' has no faces")
    if arm.mode == "EDIT":
        arm.update_from_editmode()
    if not any(b.use_deform for b in arm.data.bones):
        raise UsageError(f"Auto Skin: armature '{arm.name}' has no deform bones (enable Deform on the bones to weight)")
    return arm, sorted(meshes, key=lambda o: o.name)


def selected_bone_names(arm: bpy.types.Object) -> set:
    """Bones selected in the armature's edit mode (edit bones) or pose mode (pose bones)."""
    if arm.mode == "EDIT":
        return {eb.name for eb in arm.data.edit_bones if eb.select}
    return {pb.name for pb in arm.pose.bones if pb.select}


def armature_index(obj: bpy.types.Object, arm: bpy.types.Object) -> int:
    """Where the Armature modifier Auto Skin uses on ``obj`` sits: the one on ``arm``, else an empty
    one, else the end of the stack, where Ctrl+P > With Automatic Weights adds it (after Mirror and
    Subdivision, so each mirrored half follows its own bones)."""
    mods = list(obj.modifiers)
    for wanted in (arm, None):
        for i, m in enumerate(mods):
            if m.type == "ARMATURE" and m.object == wanted:
                return i
    return len(mods)


def pre_armature_vertices(context, meshes: list, arm: bpy.types.Object, warnings: list) -> list:
    """World-space (V_i, 3) float32 vertices of each mesh evaluated by the modifiers in front of
    its Armature modifier on ``arm`` (shape keys included). A mesh whose modifiers change the vertex
    count (Mirror, Subdivision) is read without them (and a warning names them)."""
    out = []
    with modifiers_hidden_from([(o, armature_index(o, arm)) for o in meshes]):
        depsgraph = context.evaluated_depsgraph_get()
        depsgraph.update()
        for obj in meshes:
            m = np.array(obj.matrix_world, dtype=np.float64)
            ev = obj.evaluated_get(depsgraph)
            me = ev.to_mesh()
            try:
                V = len(obj.data.vertices)
                if len(me.vertices) == V:
                    co = np.empty(V * 3, dtype=np.float32)
                    me.vertices.foreach_get("co", co)
                else:
                    names = ", ".join(m.name for m in list(obj.modifiers)[:armature_index(obj, arm)])
                    warnings.append(f"'{obj.name}': read without its modifiers ({names}), which change the "
                                    f"vertex count")
                    co = np.empty(V * 3, dtype=np.float32)
                    obj.data.vertices.foreach_get("co", co)
            finally:
                ev.to_mesh_clear()
            world = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
            out.append(world.astype(np.float32))
    return out


def read_target(context, only_selected_bones: bool = False, respect_locked: bool = True,
                only_selected_vertices: bool = False) -> SkinTarget:
    """Everything Auto Skin needs from the scene; raises UsageError / RigError, changes nothing."""
    arm, meshes = pick_objects(context)
    warnings: list = []
    rig = read_rig(meshes, arm, evaluated_before_armature=False, validate=False, with_weights=False)
    rig.vertices = np.concatenate(pre_armature_vertices(context, meshes, arm, warnings))
    J = rig.num_bones
    names = list(rig.joint_names)
    deform = rig.is_deform.copy()
    index = {n: j for j, n in enumerate(names)}
    raw_parts, sel_parts, counts, members = [], [], [], []
    locked = np.zeros(J, dtype=bool)
    for obj in meshes:
        g2b = np.array([index.get(g.name, -1) for g in obj.vertex_groups], dtype=np.int64)
        ok = g2b >= 0
        g2b[ok] = np.where(deform[g2b[ok]], g2b[ok], -1)
        members.append(read_group_members(obj.data))
        raw_parts.append(read_vertex_group_weights(obj.data, g2b, J, members[-1]) if len(g2b) else
                         np.zeros((len(obj.data.vertices), J), np.float32))
        for g in obj.vertex_groups:
            if respect_locked and g.lock_weight and g.name in index:
                locked[index[g.name]] = True
        sel = np.zeros(len(obj.data.vertices), dtype=bool)
        obj.data.vertices.foreach_get("select", sel)
        sel_parts.append(sel)
        counts.append(len(obj.data.vertices))
    if only_selected_vertices and not any(part.any() for part in sel_parts):
        raise UsageError(f"Auto Skin: no vertex of {', '.join(repr(o.name) for o in meshes)} is selected "
                         f"(select vertices in Edit Mode) or turn off 'Only Selected Vertices'")
    free = deform & ~locked
    if only_selected_bones:
        chosen = selected_bone_names(arm)
        free &= np.array([n in chosen for n in names], dtype=bool)
        if not free.any():
            raise UsageError(f"Auto Skin: no selected deform bone in '{arm.name}' (select bones in Pose Mode) "
                             f"or turn off 'Only Selected Bones'")
    if not free.any():
        raise UsageError(f"Auto Skin: every deform bone of '{arm.name}' has a locked vertex group; unlock one "
                         f"or turn off 'Respect Locked Groups'")
    rig.is_deform = free
    rig.weights = None
    validate_rig(rig)
    return SkinTarget(arm=arm, meshes=meshes, rig=rig, raw=np.concatenate(raw_parts), deform=deform, free=free,
                      selected=np.concatenate(sel_parts), counts=counts, bone_names=names, warnings=warnings,
                      members=members)
