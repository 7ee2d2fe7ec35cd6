"""Read and write the project's rig ``.npz`` layout (see ../shared/data/README.md)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from backend.io.atomic import atomic_path
from backend.rig import Rig, RigError, make_rig

REQUIRED_KEYS = ("vertices", "faces", "joints", "parents")
#: The first bytes of every .npz (a zip archive).
ZIP_MAGIC = b"PK"


def load_npz(path: str | Path, validate: bool = True) -> Rig:
    """Load a rig; raises RigError naming the file for a truncated, pickled or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise RigError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(len(ZIP_MAGIC))
    if not head:
        raise RigError(f"{path}: the file is empty, not an .npz archive")
    if head != ZIP_MAGIC:
        raise RigError(f"{path}: not an .npz archive (it is no zip file: wrong type or corrupt)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:  # object arrays need pickle
        raise RigError(f"{path}: holds pickled objects, which are refused ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RigError(f"{path}: not a readable .npz file (truncated or corrupt: {exc})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise RigError(f"{path}: missing keys {missing}")
    names = arrays.get("joint_names")
    part_names = arrays.get("mesh_part_names")
    try:
        rig = make_rig(
            vertices=arrays["vertices"],
            faces=arrays["faces"],
            joints=arrays["joints"],
            parents=arrays["parents"],
            tails=arrays.get("tails"),
            joint_names=None if names is None else [str(n) for n in names],
            is_deform=arrays.get("is_deform"),
            weights=arrays.get("weights"),
            mesh_part=arrays.get("mesh_part"),
            mesh_part_names=None if part_names is None else [str(n) for n in part_names],
            name=str(path),
            validate=validate,
        )
    except RigError:
        raise
    except (ValueError, TypeError) as exc:
        raise RigError(f"{path}: malformed arrays ({exc})") from None
    for k, v in arrays.items():
        if k not in ("vertices", "faces", "joints", "parents", "tails", "joint_names", "is_deform",
                     "weights", "mesh_part", "mesh_part_names"):
            rig.extra[k] = v
    return rig


def list_rig_files(path: str | Path, allow_file: bool = False, what: str = "folder") -> list[Path]:
    """Sorted ``*.npz`` files of a folder (or ``[path]`` when ``allow_file`` and it is a file).

    Raises RigError naming the path when it is missing or holds no rigs (``what`` names it in
    the message, e.g. "data folder")."""
    path = Path(path)
    if allow_file and path.is_file():
        return [path]
    if not path.is_dir():
        raise RigError(f"{path}: no such {what}")
    files = sorted(path.glob("*.npz"))
    if not files:
        raise RigError(f"{path}: holds no .npz rigs")
    return files


def rig_arrays(rig: Rig, include_weights: bool = True) -> dict[str, np.ndarray]:
    """The rig as the dict of arrays the .npz layout holds."""
    out = {
        "vertices": rig.vertices.astype(np.float32),
        "faces": rig.faces.astype(np.int32),
        "joints": rig.joints.astype(np.float32),
        "tails": rig.tails.astype(np.float32),
        "parents": rig.parents.astype(np.int32),
        "joint_names": np.asarray(rig.joint_names, dtype=np.str_),
        "is_deform": rig.is_deform.astype(bool),
    }
    if include_weights and rig.weights is not None:
        out["weights"] = rig.weights.astype(np.float32)
    if rig.mesh_part is not None:
        out["mesh_part"] = rig.mesh_part.astype(np.int16)
        out["mesh_part_names"] = np.asarray(rig.mesh_part_names or [], dtype=np.str_)
    for k, v in rig.extra.items():
        arr = np.asarray(v)
        if arr.dtype != object:
            out[k] = arr
    return out


def save_npz(rig: Rig, path: str | Path, include_weights: bool = True, compress: bool = True,
             **extra_arrays: np.ndarray) -> Path:
    """Write a rig atomically (temp file + rename); extra arrays are stored beside it."""
    path = Path(path)
    arrays = rig_arrays(rig, include_weights)
    arrays.update({k: np.asarray(v) for k, v in extra_arrays.items()})
    _refuse_objects(path, arrays)
    with atomic_path(path, suffix=".npz") as tmp:
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)
    return path


def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write a plain dict of arrays atomically as .npz (used by ``predict``)."""
    path = Path(path)
    _refuse_objects(path, arrays)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def _refuse_objects(path: Path, arrays: dict) -> None:
    """Our files never hold pickles: refuse object arrays before anything is written."""
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise RigError(f"{path}: array {k!r} holds Python objects, which the .npz layout does not allow")
