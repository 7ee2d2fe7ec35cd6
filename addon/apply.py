"""Write Auto Skin's result into the scene, all-or-nothing: snapshot the meshes first and put
everything back if any step of the writing fails."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import bpy
import numpy as np
from mathutils import Matrix

from backend.blender import scene

from .gather import armature_index


@dataclass
class GroupState:
    name: str
    lock: bool
    members: np.ndarray  # (n,) int64 vertex indices in the group
    weights: np.ndarray  # (n,) float32


@dataclass
class MeshSnapshot:
    """What Auto Skin may change on one mesh object."""

    obj: bpy.types.Object
    groups: list
    active_group: int
    parent: Optional[bpy.types.Object]
    parent_type: str
    parent_bone: str
    parent_inverse: Matrix
    matrix_basis: Matrix
    modifiers: list  # (name, type, object) in order
    props: dict = field(default_factory=dict)


def _group_states(obj: bpy.types.Object, members: Optional[tuple] = None) -> list:
    """One GroupState per vertex group of ``obj``, members in vertex order; ``members``: the mesh's
    ``scene.read_group_members`` when already read."""
    rows, gids, vals = scene.read_group_members(obj.data) if members is None else members
    order = np.argsort(gids, kind="stable")  # by group, then by vertex (members come by vertex)
    keys, starts = np.unique(gids[order], return_index=True)
    split = dict(zip(keys.tolist(), np.split(order, starts[1:])))
    empty = np.zeros(0, np.int64)
    return [GroupState(g.name, g.lock_weight, rows[split.get(g.index, empty)].astype(np.int64),
                       vals[split.get(g.index, empty)].astype(np.float32)) for g in obj.vertex_groups]


_TYPECODES = {"i": np.int32, "f": np.float32, "d": np.float64, "b": np.bool_}


def _own_copy(value):
    """A copy of a custom property value that does not point into Blender's memory."""
    typecode = getattr(value, "typecode", None)
    if typecode in _TYPECODES:
        return np.array(value, dtype=_TYPECODES[typecode])
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_list"):
        return value.to_list()
    return value


def snapshot(obj: bpy.types.Object, prop_keys: Sequence[str] = (), members: Optional[tuple] = None) -> MeshSnapshot:
    """Record the vertex groups, parenting, modifiers and the given custom properties of ``obj``;
    ``members``: its ``scene.read_group_members`` when already read (and still current)."""
    return MeshSnapshot(
        obj=obj, groups=_group_states(obj, members), active_group=obj.vertex_groups.active_index,
        parent=obj.parent, parent_type=obj.parent_type, parent_bone=obj.parent_bone,
        parent_inverse=obj.matrix_parent_inverse.copy(), matrix_basis=obj.matrix_basis.copy(),
        modifiers=[(m.name, m.type, getattr(m, "object", None)) for m in obj.modifiers],
        props={k: (_own_copy(obj[k]) if k in obj else None) for k in prop_keys},
    )


def restore(snap: MeshSnapshot) -> None:
    """Put ``snap.obj`` back exactly as recorded."""
    obj = snap.obj
    names = {g.name for g in snap.groups}
    for vg in list(obj.vertex_groups):
        if vg.name not in names:
            obj.vertex_groups.remove(vg)
    all_idx = list(range(len(obj.data.vertices)))
    for st in snap.groups:
        vg = obj.vertex_groups.get(st.name) or obj.vertex_groups.new(name=st.name)
        vg.lock_weight = False
        vg.remove(all_idx)
        values, inverse = np.unique(st.weights, return_inverse=True)
        for k, val in enumerate(values.tolist()):
            vg.add(st.members[inverse == k].tolist(), val, "REPLACE")
        vg.lock_weight = st.lock
    if snap.active_group < len(obj.vertex_groups):
        obj.vertex_groups.active_index = snap.active_group
    recorded = {name for name, _, _ in snap.modifiers}
    for m in list(obj.modifiers):
        if m.name not in recorded:
            obj.modifiers.remove(m)
    for name, mtype, target in snap.modifiers:
        m = obj.modifiers.get(name)
        if m is not None and mtype == "ARMATURE":
            m.object = target
    obj.parent = snap.parent
    obj.parent_type = snap.parent_type
    obj.parent_bone = snap.parent_bone
    obj.matrix_parent_inverse = snap.parent_inverse
    obj.matrix_basis = snap.matrix_basis
    for k, v in snap.props.items():
        if k in obj:
            del obj[k]  # never assign over an existing array property (see store_prediction)
        if v is not None:
            obj[k] = v


def ensure_armature_modifier(obj: bpy.types.Object, arm: bpy.types.Object) -> bpy.types.Modifier:
    """An Armature modifier on ``arm``: the existing one, an empty one filled in, or a new one at the
    end of the stack, where Ctrl+P puts it (:func:`gather.armature_index`)."""
    index = armature_index(obj, arm)
    if index < len(obj.modifiers):
        m = obj.modifiers[index]
    else:
        m = obj.modifiers.new(name="Armature", type="ARMATURE")
    m.object = arm
    return m


def parent_keep_transform(obj: bpy.types.Object, arm: bpy.types.Object) -> None:
    """Parent ``obj`` to ``arm`` like Ctrl+P (object parent, parent inverse), without moving it."""
    if obj.parent == arm and obj.parent_type == "OBJECT":
        return
    world = obj.matrix_world.copy()
    obj.parent = arm
    obj.parent_type = "OBJECT"
    obj.matrix_parent_inverse = arm.matrix_world.inverted()
    obj.matrix_world = world


def write_result(meshes: Sequence[bpy.types.Object], arm: bpy.types.Object, bone_names: Sequence[str],
                 free: np.ndarray, columns: np.ndarray, counts: Sequence[int],
                 after_each: Optional[Callable[[bpy.types.Object, int], None]] = None,
                 members: Optional[Sequence[tuple]] = None) -> None:
    """Write the (V, Jf) ``columns`` of the ``free`` bones into the meshes (rows split by ``counts``),
    then add the Armature modifier and parent. Other groups are not touched. members: per mesh, its
    current ``scene.read_group_members`` (a rewritten group is then cleared member by member)."""
    names = [n for n, f in zip(bone_names, free) if f]
    start = 0
    for i, (obj, n) in enumerate(zip(meshes, counts)):
        scene.write_weights(obj, names, columns[start:start + n], replace=True,
                            members=None if members is None else members[i])
        start += n
        ensure_armature_modifier(obj, arm)
        parent_keep_transform(obj, arm)
        if after_each is not None:
            after_each(obj, start)
