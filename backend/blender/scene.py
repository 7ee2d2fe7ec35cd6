"""bpy <-> :class:`backend.rig.Rig`: build Blender objects from arrays and read them back.

The one conversion module between Blender scenes and rigs, shared by the backend (file import,
bone heat) and the add-on. Depends on bpy, numpy and ``backend.rig`` only.

Conventions: rig coordinates are Blender world coordinates; bones are created with roll 0;
the weights of a vertex are the Armature modifier's effective weights, i.e. the groups of
deform bones only, normalised per vertex.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Optional, Sequence

import bpy
import numpy as np

from backend.rig import Rig, RigError, make_rig, sanitize_weights

MIN_BONE_LENGTH = 1e-5  # Blender deletes zero-length bones when leaving edit mode


# ----------------------------------------------------------------------------- building
def build_mesh_data(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A new Mesh datablock from (V, 3) float vertices and (F, 3) int triangles (foreach_set, no Python loop)."""
    v = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    f = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.ravel())
    me.loops.add(f.size)
    me.loops.foreach_set("vertex_index", f.ravel())
    me.polygons.add(len(f))
    me.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
    me.update(calc_edges=True)
    return me


@contextmanager
def _object_mode_active(obj: bpy.types.Object, mode: str) -> Iterator[None]:
    """Make ``obj`` active in ``mode`` for the block; restore the previous active object after."""
    view_layer = bpy.context.view_layer
    prev = view_layer.objects.active
    if prev is not None and prev.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode=mode)
    try:
        yield
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = prev


def build_armature(rig: Rig, name: str,
                   collection: Optional[bpy.types.Collection] = None) -> tuple[bpy.types.Object, list[str]]:
    """An armature object (at the world origin) with one bone per rig joint: head, tail, parent,
    use_deform and name. Returns (arm_obj, J bone names as Blender made them: names may be
    shortened to 63 bytes or de-duplicated). Note ``arm.bones`` iterates in hierarchy order,
    not rig order: always match bones by these names."""
    collection = collection or bpy.context.scene.collection
    arm = bpy.data.armatures.new(name)
    arm_obj = bpy.data.objects.new(name, arm)
    collection.objects.link(arm_obj)
    heads = rig.joints.astype(np.float64)
    tails = rig.tails.astype(np.float64).copy()
    vec = tails - heads
    short = np.linalg.norm(vec, axis=1) < MIN_BONE_LENGTH
    if short.any():  # keep degenerate bones alive: a tiny stub along +Z, scaled to the skeleton
        span = float(np.ptp(np.concatenate([heads, tails]), axis=0).max()) or 1.0
        tails[short] = heads[short] + np.array([0.0, 0.0, max(1e-3 * span, 10 * MIN_BONE_LENGTH)])
    with _object_mode_active(arm_obj, "EDIT"):
        ebs = arm.edit_bones
        created = []
        for j in range(rig.num_bones):
            eb = ebs.new(rig.joint_names[j] or f"bone_{j:03d}")
            eb.head = heads[j]
            eb.tail = tails[j]
            eb.use_deform = bool(rig.is_deform[j])
            created.append(eb)
        names = [eb.name for eb in created]
        for j in range(rig.num_bones):
            p = int(rig.parents[j])
            if p >= 0:
                created[j].parent = created[p]
                created[j].use_connect = False
    return arm_obj, names


def build_objects(rig: Rig, name: Optional[str] = None, with_weights: bool = True,
                  collection: Optional[bpy.types.Collection] = None) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Create ``(mesh_obj, arm_obj)`` for a rig in ``collection`` (default: the scene's).

    The mesh gets a vertex group per deform bone (plus any other bone with weight) filled from
    ``rig.weights`` when ``with_weights``, an Armature modifier on ``arm_obj`` and ``arm_obj`` as parent.
    ``arm_obj["autoskin_bone_names"]`` lists the Blender bone name of each rig joint, in rig order.
    """
    name = name or _rig_stem(rig.name)
    collection = collection or bpy.context.scene.collection
    arm_obj, bone_names = build_armature(rig, name + "_armature", collection)
    arm_obj["autoskin_bone_names"] = bone_names  # rig column j -> Blender bone name
    me = build_mesh_data(name, rig.vertices, rig.faces)
    mesh_obj = bpy.data.objects.new(name, me)
    collection.objects.link(mesh_obj)
    w = rig.weights if (with_weights and rig.weights is not None) else None
    used = [j for j in range(rig.num_bones) if rig.is_deform[j] or (w is not None and w[:, j].any())]
    for j in used:
        mesh_obj.vertex_groups.new(name=bone_names[j])
    if w is not None:
        if not np.all(np.isfinite(w)) or w.shape != (rig.num_vertices, rig.num_bones):
            raise RigError(f"{rig.name}: weights of shape {w.shape} are not finite (V, J) weights")
        _write_new_mesh_weights(mesh_obj, [bone_names[j] for j in used], w[:, used])
    mod = mesh_obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_obj
    mesh_obj.parent = arm_obj
    mesh_obj.matrix_parent_inverse.identity()
    return mesh_obj, arm_obj


def _rig_stem(name: str) -> str:
    stem = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return stem.strip("<>") or "rig"


# ----------------------------------------------------------------------------- weights
def write_weights(mesh_obj: bpy.types.Object, bone_names: Sequence[str], weights: np.ndarray,
                  replace: bool = True,
                  members: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> None:
    """Write (V, J) weights into the vertex groups named ``bone_names`` (created when missing).

    Groups of other names are left untouched. ``replace``: clear each written group first;
    otherwise only vertices with a nonzero weight are set and the others keep their old weight.
    Vertices sharing a weight value are added in one call (fast for painted, mostly-1.0 weights).
    members: the mesh's current :func:`read_group_members`; a group is then cleared by removing its
    members only, instead of every vertex.
    """
    me = mesh_obj.data
    V = len(me.vertices)
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape != (V, len(bone_names)):
        raise RigError(f"{mesh_obj.name}: weights of shape {w.shape} do not fit {V} vertices x {len(bone_names)} bones")
    if not np.all(np.isfinite(w)):
        raise RigError(f"{mesh_obj.name}: weights contain NaN or inf")
    all_idx = list(range(V)) if members is None else None
    if members is not None:
        order = np.argsort(members[1], kind="stable")
        gids, starts = np.unique(members[1][order], return_index=True)
        of_group = dict(zip(gids.tolist(), np.split(members[0][order], starts[1:])))
    for j, bname in enumerate(bone_names):
        vg = mesh_obj.vertex_groups.get(bname)
        if vg is None:
            vg = mesh_obj.vertex_groups.new(name=bname)
        elif replace and V:
            if members is None:
                vg.remove(all_idx)
            elif vg.index in of_group:
                vg.remove(of_group[vg.index].tolist())
        col = w[:, j]
        nz = np.flatnonzero(col > 0.0)
        if len(nz):
            _add_column(vg, nz, col[nz])


def _add_column(vg: bpy.types.VertexGroup, idx: np.ndarray, vals: np.ndarray, min_shared: int = 8) -> None:
    """Set weights ``vals`` on vertices ``idx`` of one group: one ``add`` call per value shared by at
    least ``min_shared`` vertices (painted weights: mostly 1.0), one call per vertex for the rest."""
    values, inverse, counts = np.unique(vals, return_inverse=True, return_counts=True)
    shared = counts >= min_shared
    if shared.any():
        sel = np.flatnonzero(shared[inverse])
        order = sel[np.argsort(inverse[sel], kind="stable")]
        splits = np.flatnonzero(np.diff(inverse[order])) + 1
        for group in np.split(order, splits):
            vg.add(idx[group].tolist(), float(vals[group[0]]), "REPLACE")
    rest = np.flatnonzero(~shared[inverse])
    add = vg.add
    for i, x in zip(idx[rest].tolist(), vals[rest].tolist()):
        add([i], x, "REPLACE")


def _write_new_mesh_weights(mesh_obj: bpy.types.Object, group_names: Sequence[str], weights: np.ndarray) -> None:
    """Fast path for a mesh created here and still without weights: fill the deform layer through
    bmesh in one pass (about 4x faster than ``VertexGroup.add`` for dense random weights)."""
    import bmesh

    gidx = np.array([mesh_obj.vertex_groups[n].index for n in group_names], dtype=np.int64)
    rows, cols = np.nonzero(weights > 0.0)
    vals = weights[rows, cols].tolist()
    bm = bmesh.new()
    try:
        bm.from_mesh(mesh_obj.data)
        layer = bm.verts.layers.deform.verify()
        verts = list(bm.verts)
        for r, g, x in zip(rows.tolist(), gidx[cols].tolist(), vals):
            verts[r][layer][g] = x
        bm.to_mesh(mesh_obj.data)
    finally:
        bm.free()
    mesh_obj.data.update()


def write_weights_split(mesh_objs: Sequence[bpy.types.Object], bone_names: Sequence[str], weights: np.ndarray,
                        replace: bool = True) -> None:
    """Write merged (sum V_i, J) weights back to several meshes, rows in the order of ``mesh_objs``
    (the order :func:`read_rig` merged them in)."""
    counts = [len(o.data.vertices) for o in mesh_objs]
    if sum(counts) != len(weights):
        raise RigError(f"{len(weights)} weight rows do not match the {sum(counts)} vertices of "
                       f"{', '.join(o.name for o in mesh_objs)}")
    start = 0
    for obj, n in zip(mesh_objs, counts):
        write_weights(obj, bone_names, weights[start:start + n], replace=replace)
        start += n


def read_group_members(mesh: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every vertex-group membership of a mesh: ((n,) int64 vertex, (n,) int64 group index, (n,)
    float32 weight), by vertex then by the vertex's own group order (that of ``vertex.groups``).

    Read through a temporary BMesh's deform layer (about twice as fast as the vertices' RNA
    ``groups``; the mesh itself is not changed); a mesh without the layer has no membership."""
    import bmesh

    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        layer = bm.verts.layers.deform.active
        if layer is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        items = [v[layer].items() for v in bm.verts]
    finally:
        bm.free()
    counts = np.fromiter(map(len, items), np.int64, len(items))
    pairs = np.array([x for row in items for x in row], np.float64).reshape(-1, 2)
    return (np.repeat(np.arange(len(items), dtype=np.int64), counts), pairs[:, 0].astype(np.int64),
            pairs[:, 1].astype(np.float32))


def read_vertex_group_weights(mesh: bpy.types.Mesh, group_to_bone: np.ndarray, num_bones: int,
                              members: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """(V, num_bones) float32 raw weights of a mesh; ``group_to_bone`` maps vertex group index -> bone
    index (-1: ignore). Overlapping groups of one bone add up. members: the mesh's
    :func:`read_group_members` when already read."""
    V = len(mesh.vertices)
    out = np.zeros((V, num_bones), dtype=np.float32)
    r, g, vals = read_group_members(mesh) if members is None else members
    if len(r):
        valid = g < len(group_to_bone)
        r, g = r[valid], g[valid]
        b = group_to_bone[g]
        keep = b >= 0
        np.add.at(out, (r[keep], b[keep]), vals[valid][keep])
    return out


# ----------------------------------------------------------------------------- reading
def read_skeleton(arm_obj: bpy.types.Object) -> dict:
    """World-space bones of an armature in ``arm.bones`` order: joints/tails (J, 3) float32,
    parents (J,) int32, names, is_deform (J,) bool."""
    bones = list(arm_obj.data.bones)
    if not bones:
        raise RigError(f"{arm_obj.name}: the armature has no bones")
    m = np.array(arm_obj.matrix_world, dtype=np.float64)
    heads = np.array([b.head_local for b in bones], dtype=np.float64)
    tails = np.array([b.tail_local for b in bones], dtype=np.float64)
    to_world = lambda p: p @ m[:3, :3].T + m[:3, 3]  # noqa: E731
    index = {b.name: i for i, b in enumerate(bones)}
    return {
        "joints": to_world(heads).astype(np.float32),
        "tails": to_world(tails).astype(np.float32),
        "parents": np.array([index[b.parent.name] if b.parent else -1 for b in bones], dtype=np.int32),
        "names": [b.name for b in bones],
        "is_deform": np.array([b.use_deform for b in bones], dtype=bool),
    }


def _armature_modifiers(obj: bpy.types.Object) -> list:
    return [m for m in obj.modifiers if m.type == "ARMATURE"]


@contextmanager
def modifiers_hidden_from(objs_and_index: Iterable[tuple[bpy.types.Object, int]]) -> Iterator[None]:
    """Disable in the viewport every modifier at or after the given index of each object,
    restoring them on exit."""
    saved = []
    for obj, index in objs_and_index:
        for m in list(obj.modifiers)[index:]:
            saved.append((m, m.show_viewport))
            m.show_viewport = False
    try:
        yield
    finally:
        for m, state in saved:
            m.show_viewport = state


def _without_armature_stack(objs: Iterable[bpy.types.Object]):
    """Disable, in the viewport, each object's first Armature modifier and every modifier after it."""
    firsts = []
    for obj in objs:
        first = next((i for i, m in enumerate(obj.modifiers) if m.type == "ARMATURE"), None)
        if first is not None:
            firsts.append((obj, first))
    return modifiers_hidden_from(firsts)


def _mesh_arrays(obj: bpy.types.Object, me: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """World-space (V, 3) float32 vertices and (F, 3) int32 loop triangles of an object's mesh."""
    V = len(me.vertices)
    co = np.empty(V * 3, dtype=np.float32)
    me.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world, dtype=np.float64)
    world = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    me.calc_loop_triangles()
    tris = np.empty(len(me.loop_triangles) * 3, dtype=np.int32)
    me.loop_triangles.foreach_get("vertices", tris)
    return world.astype(np.float32), tris.reshape(-1, 3)


def read_rig(mesh_objs: bpy.types.Object | Sequence[bpy.types.Object], arm_obj: bpy.types.Object,
             depsgraph=None, evaluated_before_armature: bool = True, name: Optional[str] = None,
             validate: bool = True, with_weights: bool = True) -> Rig:
    """Read meshes + armature into one Rig in world space.

    Vertices of several meshes are merged in the given order (``mesh_part`` / ``mesh_part_names``);
    faces are the loop triangles. All bones are kept (control bones with ``is_deform`` False);
    weights come from vertex groups matched to deform bones by name and are normalised per vertex
    (rows without deform weight stay zero). A mesh without an Armature modifier but parented to one
    bone gets weight 1 on that bone. ``rig.weights`` is None when no mesh carries any deform weight.

    ``evaluated_before_armature``: read each mesh as evaluated by the modifiers before its first
    Armature modifier (mirror, shape keys... in rest pose), using ``depsgraph`` or the context's;
    otherwise read the raw mesh data. ``np.bincount(rig.mesh_part)`` gives the per-mesh vertex
    counts (for :func:`write_weights_split`). ``with_weights`` False: the vertex groups are not read
    (``rig.weights`` None), for callers that read them themselves.
    """
    if isinstance(mesh_objs, bpy.types.Object):
        mesh_objs = [mesh_objs]
    mesh_objs = list(mesh_objs)
    if not mesh_objs:
        raise RigError(f"{arm_obj.name}: no mesh to read")
    for o in mesh_objs:
        if o.type != "MESH":
            raise RigError(f"{o.name}: is a {o.type} object, not a mesh")
    for o in mesh_objs:
        if o.mode == "EDIT":
            o.update_from_editmode()  # edit-mode changes are not in the mesh data until synced
    skel = read_skeleton(arm_obj)
    J = len(skel["names"])
    bone_index = {n: j for j, n in enumerate(skel["names"])}
    deform = skel["is_deform"]

    verts, faces, weights, parts = [], [], [], []
    offset = 0
    any_weight = False
    with _without_armature_stack(mesh_objs if evaluated_before_armature else []):
        if evaluated_before_armature:
            if depsgraph is None:
                depsgraph = bpy.context.evaluated_depsgraph_get()
            depsgraph.update()
        for p, obj in enumerate(mesh_objs):
            src = obj.evaluated_get(depsgraph) if evaluated_before_armature else obj
            me = src.to_mesh() if evaluated_before_armature else obj.data
            try:
                v, f = _mesh_arrays(obj, me)
                g2b = np.array([bone_index.get(g.name, -1) for g in obj.vertex_groups], dtype=np.int64)
                if len(g2b) and with_weights:
                    g2b[g2b >= 0] = np.where(deform[g2b[g2b >= 0]], g2b[g2b >= 0], -1)
                    w = read_vertex_group_weights(me, g2b, J)
                else:
                    w = np.zeros((len(v), J), dtype=np.float32)
            finally:
                if evaluated_before_armature:
                    src.to_mesh_clear()
            if (with_weights and not _armature_modifiers(obj) and obj.parent == arm_obj and obj.parent_type == "BONE"
                    and obj.parent_bone in bone_index):
                w[:] = 0.0
                w[:, bone_index[obj.parent_bone]] = 1.0
            any_weight |= bool(w.any())
            verts.append(v)
            faces.append(f + offset)
            weights.append(w)
            parts.append(np.full(len(v), p, dtype=np.int16))
            offset += len(v)
    W = None
    if any_weight:
        W, _ = sanitize_weights(np.concatenate(weights))
    rig = make_rig(
        vertices=np.concatenate(verts), faces=np.concatenate(faces),
        joints=skel["joints"], parents=skel["parents"], tails=skel["tails"],
        joint_names=skel["names"], is_deform=deform, weights=W,
        mesh_part=np.concatenate(parts), mesh_part_names=[o.name for o in mesh_objs],
        name=name or arm_obj.name, validate=validate,
    )
    return rig


def remove_objects(objs: Iterable[bpy.types.Object]) -> None:
    """Delete objects and their (then unused) mesh / armature data."""
    datas = []
    for obj in list(objs):
        if obj is None:
            continue
        data = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        if data is not None:
            datas.append(data)
    for data in datas:
        if data.users == 0:
            if isinstance(data, bpy.types.Mesh):
                bpy.data.meshes.remove(data)
            elif isinstance(data, bpy.types.Armature):
                bpy.data.armatures.remove(data)


__all__ = ["build_objects", "build_armature", "build_mesh_data", "read_rig", "read_skeleton", "write_weights",
           "write_weights_split", "read_group_members", "read_vertex_group_weights", "remove_objects"]
