"""Rigged asset files <-> :class:`Rig` through Blender: import .glb/.gltf/.fbx/.blend, export .glb/.blend.

These functions reset the Blender session to an empty factory scene (``read_factory_settings``):
they are meant for the command line and batch work, not for an interactive Blender session.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Optional

import bpy
import numpy as np

from backend.blender.scene import build_objects, read_rig
from backend.io.atomic import atomic_path
from backend.rig import Rig, RigError, make_rig, validate_rig

IMPORT_SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")
EXPORT_SUFFIXES = (".glb", ".blend")


def reset_session() -> None:
    """Empty the Blender session (factory settings, no objects)."""
    with _quiet():
        bpy.ops.wm.read_factory_settings(use_empty=True)


@contextlib.contextmanager
def _quiet():
    """Silence Python-level prints of Blender's importers/exporters."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def import_file(path: str | os.PathLike) -> None:
    """Load a .glb/.gltf/.fbx (into a fresh empty scene) or open a .blend (scripts disabled)."""
    path = Path(path)
    if not path.is_file():
        raise RigError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise RigError(f"{path}: unsupported file type '{suffix}' (expected one of {', '.join(IMPORT_SUFFIXES)})")
    try:
        with _quiet():
            if suffix == ".blend":
                bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
                return
            bpy.ops.wm.read_factory_settings(use_empty=True)
            if suffix in (".glb", ".gltf"):
                bpy.ops.import_scene.gltf(filepath=str(path), merge_vertices=False)
            else:
                bpy.ops.import_scene.fbx(filepath=str(path), use_anim=False)
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError, AttributeError, OSError) as exc:
        msg = str(exc).strip().splitlines()
        raise RigError(f"{path}: Blender could not import it ({msg[-1] if msg else type(exc).__name__})") from None


def deformed_meshes(arm_obj: bpy.types.Object, objects) -> list[bpy.types.Object]:
    """Mesh objects (with vertices) deformed by ``arm_obj``: through an Armature modifier, or
    parented to it (armature or bone parenting), sorted by name for a stable order."""
    out = []
    for obj in objects:
        if obj.type != "MESH" or len(obj.data.vertices) == 0:
            continue
        by_mod = any(m.type == "ARMATURE" and m.object == arm_obj for m in obj.modifiers)
        by_parent = obj.parent == arm_obj and obj.parent_type in ("ARMATURE", "BONE", "OBJECT")
        if by_mod or by_parent:
            out.append(obj)
    return sorted(out, key=lambda o: o.name)


def find_rig_objects(source: str = "<scene>") -> tuple[bpy.types.Object, list[bpy.types.Object]]:
    """The armature of the current scene that deforms the most vertices, and its meshes."""
    objects = list(bpy.context.scene.objects)
    arms = [o for o in objects if o.type == "ARMATURE" and len(o.data.bones)]
    if not arms:
        raise RigError(f"{source}: no armature with bones in the scene")
    best = None
    for arm in arms:
        meshes = deformed_meshes(arm, objects)
        n = sum(len(m.data.vertices) for m in meshes)
        if meshes and (best is None or n > best[0]):
            best = (n, arm, meshes)
    if best is None:
        raise RigError(f"{source}: no mesh is deformed by the armature "
                       f"({', '.join(a.name for a in arms)}): nothing is skinned")
    return best[1], best[2]


def weld_vertices(rig: Rig, tol: float = 1e-6, weight_decimals: int = 4) -> Rig:
    """Merge vertices at the same position (within ``tol`` x the bounding-box diagonal) that also
    have the same weights (to ``weight_decimals``) and mesh part, as glTF splits vertices at UV seams.
    Faces that collapse are dropped. Returns a new rig (or the same one when nothing merges)."""
    v = rig.vertices.astype(np.float64)
    diag = float(np.linalg.norm(np.ptp(v, axis=0))) or 1.0
    cols = [np.round(v / (tol * diag)).astype(np.int64)]
    if rig.weights is not None:
        cols.append(np.round(rig.weights.astype(np.float64) * 10 ** weight_decimals).astype(np.int64))
    if rig.mesh_part is not None:
        cols.append(rig.mesh_part.astype(np.int64)[:, None])
    key = np.ascontiguousarray(np.concatenate(cols, axis=1))
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) == len(v):
        return rig
    order = np.argsort(first)  # keep the original order of first occurrences
    new_of_group = np.empty_like(order)
    new_of_group[order] = np.arange(len(order))
    remap = new_of_group[inverse]
    keep_old = first[order]
    faces = remap[rig.faces]
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return make_rig(
        vertices=rig.vertices[keep_old], faces=faces[ok], joints=rig.joints, parents=rig.parents, tails=rig.tails,
        joint_names=rig.joint_names, is_deform=rig.is_deform,
        weights=None if rig.weights is None else rig.weights[keep_old],
        mesh_part=None if rig.mesh_part is None else rig.mesh_part[keep_old],
        mesh_part_names=rig.mesh_part_names, name=rig.name,
    )


def load_rig_file(path: str | os.PathLike, weld: bool = True, require_weights: bool = True) -> Rig:
    """Import a rigged .glb/.gltf/.fbx/.blend and return its skinned meshes merged in world space.

    ``weld``: merge seam-split duplicates (see :func:`weld_vertices`). Raises RigError naming the
    file when it cannot be imported, holds no armature or skinned mesh, or (``require_weights``)
    has no weights on deform bones.
    """
    path = Path(path)
    import_file(path)
    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    arm, meshes = find_rig_objects(str(path))
    rig = read_rig(meshes, arm, name=str(path), validate=False)
    if require_weights and rig.weights is None:
        raise RigError(f"{path}: the skinned meshes carry no weights on deform bones")
    if weld:
        rig = weld_vertices(rig)
    validate_rig(rig, require_weights=require_weights)
    return rig


def export_rig(rig: Rig, path: str | os.PathLike, name: Optional[str] = None) -> Path:
    """Write a rig with its weights as .glb (glTF skin, at most 4 influences per vertex) or .blend,
    atomically (temporary file + rename). Resets the Blender session."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise RigError(f"{path}: cannot export to '{suffix}' (expected one of {', '.join(EXPORT_SUFFIXES)})")
    reset_session()
    build_objects(rig, name=name)
    with atomic_path(path, suffix=suffix) as tmp:
        tmp.unlink()  # let Blender create the file itself (no '.blend1' backup of an empty file)
        with _quiet():
            if suffix == ".blend":
                bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False)
            else:
                bpy.ops.export_scene.gltf(
                    filepath=str(tmp), export_format="GLB", export_skins=True, export_influence_nb=4,
                    export_all_influences=False, export_def_bones=False, export_animations=False,
                    export_materials="NONE", export_yup=True, export_apply=False, check_existing=False,
                )
        if not tmp.is_file():
            raise RigError(f"{path}: Blender wrote no file")
    return path


def import_rig(path: str | os.PathLike, weld: bool = True, require_weights: bool = False) -> Rig:
    """:func:`load_rig_file` accepting rigs without weights (for prediction and the demo)."""
    return load_rig_file(path, weld=weld, require_weights=require_weights)


def save_blend(rig: Rig, path: str | os.PathLike) -> Path:
    """Write ``rig`` as a .blend with vertex groups (atomic); see :func:`export_rig`."""
    path = Path(path)
    if path.suffix.lower() != ".blend":
        raise RigError(f"{path}: save_blend writes .blend files only")
    return export_rig(rig, path)


def save_glb(rig: Rig, path: str | os.PathLike) -> Path:
    """Write ``rig`` as a skinned .glb (at most 4 influences per vertex, atomic); see :func:`export_rig`."""
    path = Path(path)
    if path.suffix.lower() != ".glb":
        raise RigError(f"{path}: save_glb writes .glb files only")
    return export_rig(rig, path)
