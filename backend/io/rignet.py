"""RigNet's text rigs: a ``rig_info`` .txt (joints, root, hier, skin lines) + an .obj mesh -> Rig.

``rig_info`` lines (whitespace separated)::

    joints NAME x y z           one per bone, in file order
    root NAME                   the root bone
    hier PARENT CHILD           one per parent -> child link
    skin VIDX BONE w BONE w ... weights of vertex VIDX (0-based), any number of pairs

Pure Python + numpy. Tails default to the children's heads (see ``backend.rig.default_tails``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backend.rig import Rig, RigError, make_rig, sanitize_weights


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float32 vertices and (F, 3) int32 triangles of a Wavefront OBJ (polygons fan-split,
    ``v/vt/vn`` and negative indices handled)."""
    path = Path(path)
    if not path.is_file():
        raise RigError(f"{path}: no such file")
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if parts[0] == "v":
                    verts.append([float(x) for x in parts[1:4]])
                    if len(verts[-1]) != 3:
                        raise ValueError("a vertex needs 3 coordinates")
                elif parts[0] == "f":
                    idx = [int(p.split("/")[0]) for p in parts[1:]]
                    if len(idx) < 3:
                        raise ValueError("a face needs at least 3 vertices")
                    idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                    faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
            except ValueError as exc:
                raise RigError(f"{path}:{lineno}: bad OBJ line ({exc}): {line.strip()[:80]}") from None
    if not verts:
        raise RigError(f"{path}: no vertices")
    if not faces:
        raise RigError(f"{path}: no faces")
    v = np.asarray(verts, dtype=np.float32)
    f = np.asarray(faces, dtype=np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise RigError(f"{path}: face indices outside 1..{len(v)}")
    return v, f.astype(np.int32)


def read_rig_info(path: str | os.PathLike, num_vertices: int) -> dict:
    """Parse a rig_info file: joint names (J), joints (J, 3) float32, parents (J,) int32,
    weights (num_vertices, J) float32 (rows as given, unlisted vertices zero)."""
    path = Path(path)
    if not path.is_file():
        raise RigError(f"{path}: no such file")
    names: list[str] = []
    pos: list[list[float]] = []
    hier: list[tuple[str, str, int]] = []
    skin: list[tuple[int, list[str], list[float], int]] = []
    roots: list[str] = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            p = line.split()
            if not p:
                continue
            try:
                if p[0] == "joints":
                    if len(p) != 5:
                        raise ValueError("expected 'joints NAME x y z'")
                    if p[1] in names:
                        raise ValueError(f"joint '{p[1]}' defined twice")
                    names.append(p[1])
                    pos.append([float(x) for x in p[2:5]])
                elif p[0] == "root":
                    roots.append(p[1])
                elif p[0] == "hier":
                    if len(p) != 3:
                        raise ValueError("expected 'hier PARENT CHILD'")
                    hier.append((p[1], p[2], lineno))
                elif p[0] == "skin":
                    if len(p) < 4 or (len(p) - 2) % 2:
                        raise ValueError("expected 'skin VIDX BONE w [BONE w ...]'")
                    skin.append((int(p[1]), p[2::2], [float(x) for x in p[3::2]], lineno))
                else:
                    raise ValueError(f"unknown record '{p[0]}'")
            except (ValueError, IndexError) as exc:
                raise RigError(f"{path}:{lineno}: {exc}: {line.strip()[:80]}") from None
    if not names:
        raise RigError(f"{path}: no 'joints' lines")
    index = {n: j for j, n in enumerate(names)}
    for r in roots:
        if r not in index:
            raise RigError(f"{path}: root '{r}' is not a joint")
    parents = np.full(len(names), -1, dtype=np.int32)
    for parent, child, lineno in hier:
        for n in (parent, child):
            if n not in index:
                raise RigError(f"{path}:{lineno}: hier names unknown joint '{n}'")
        if parents[index[child]] >= 0 and parents[index[child]] != index[parent]:
            raise RigError(f"{path}:{lineno}: joint '{child}' has two parents")
        parents[index[child]] = index[parent]
    for r in roots:
        if parents[index[r]] >= 0:
            raise RigError(f"{path}: root '{r}' has a parent")
    weights = np.zeros((num_vertices, len(names)), dtype=np.float32)
    for vidx, bones, ws, lineno in skin:
        if not 0 <= vidx < num_vertices:
            raise RigError(f"{path}:{lineno}: skin vertex {vidx} outside 0..{num_vertices - 1} "
                           f"(mesh has {num_vertices})")
        for b, w in zip(bones, ws):
            if b not in index:
                raise RigError(f"{path}:{lineno}: skin names unknown joint '{b}'")
            weights[vidx, index[b]] += w
    return {"names": names, "joints": np.asarray(pos, dtype=np.float32), "parents": parents, "weights": weights,
            "has_skin": bool(skin)}


def load_rignet(rig_info: str | os.PathLike, obj: str | os.PathLike) -> Rig:
    """A Rig from RigNet's ``rig_info`` text and its OBJ mesh; all bones deform, weights are
    normalised per vertex (None when the file has no skin lines)."""
    v, f = read_obj(obj)
    info = read_rig_info(rig_info, len(v))
    weights = None
    if info["has_skin"]:
        if (info["weights"] < 0).any():
            raise RigError(f"{rig_info}: negative skin weights")
        weights, _ = sanitize_weights(info["weights"])
    return make_rig(vertices=v, faces=f, joints=info["joints"], parents=info["parents"],
                    joint_names=info["names"], weights=weights, name=str(rig_info))


def find_obj_for(rig_info: str | os.PathLike) -> Path | None:
    """The OBJ of a RigNet rig_info file: ``X.obj`` beside it, or in a sibling ``obj``/``obj_remesh`` folder."""
    p = Path(rig_info)
    for cand in (p.with_suffix(".obj"), p.parent.parent / "obj_remesh" / f"{p.stem}.obj",
                 p.parent.parent / "obj" / f"{p.stem}.obj", p.parent / f"{p.stem}_remesh.obj"):
        if cand.is_file():
            return cand
    return None


def is_rig_info(path: str | os.PathLike) -> bool:
    """True when a .txt file starts like a RigNet rig_info (first record is joints/root/hier/skin)."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                p = line.split()
                if p:
                    return p[0] in ("joints", "root", "hier", "skin")
    except OSError:
        return False
    return False
