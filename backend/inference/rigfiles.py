"""Shared by the skin / predict commands: read a rig for prediction, write a skinned rig."""
from __future__ import annotations

from pathlib import Path

from backend.rig import Rig, RigError, validate_rig

NPZ = ".npz"
BLENDER_INPUTS = (".glb", ".gltf", ".fbx", ".blend")
BLENDER_OUTPUTS = (".glb", ".blend")


def _blender_files(path: Path):
    try:
        from backend.blender import files
    except ImportError as exc:
        raise RigError(f"{path}: reading or writing '{path.suffix}' needs Blender's Python module "
                       f"(bpy) and backend.blender.files ({exc}); use an .npz file instead") from None
    return files


def read_rig_for_prediction(path: str | Path, keep_weights: bool = False) -> Rig:
    """A rig from .npz / .glb / .gltf / .fbx / .blend; any weights in the file are dropped unless
    ``keep_weights`` (the demo compares with them)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == NPZ:
        from backend.io.npz import load_npz

        rig = load_npz(path, validate=False)
    elif suffix in BLENDER_INPUTS:
        if not path.is_file():
            raise RigError(f"{path}: no such file")
        rig = _blender_files(path).load_rig_file(path, require_weights=False)
    else:
        raise RigError(f"{path}: unsupported input type '{suffix}' (expected .npz, {', '.join(BLENDER_INPUTS)})")
    if not keep_weights:
        rig = rig.without_weights()
    validate_rig(rig)
    return rig


def check_skinned_output(path: str | Path, source: str | Path) -> Path:
    """RigError unless a skinned rig can be written to ``path``: a supported type, not a folder, not
    under a file, not the input ``source`` (whose painted weights it would replace)."""
    from backend.io.outputs import check_output_file

    path = Path(path)
    if path.suffix.lower() not in (NPZ, *BLENDER_OUTPUTS):
        raise RigError(f"{path}: unsupported output type '{path.suffix.lower()}' (expected .npz, "
                       f"{', '.join(BLENDER_OUTPUTS)})")
    return check_output_file(path, [source])


def write_skinned_rig(rig: Rig, path: str | Path) -> Path:
    """Write ``rig`` (with its weights) as .npz, or .glb / .blend with vertex groups; atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == NPZ:
        from backend.io.npz import save_npz

        return save_npz(rig, path)
    if suffix in BLENDER_OUTPUTS:
        return _blender_files(path).export_rig(rig, path)
    raise RigError(f"{path}: unsupported output type '{suffix}' (expected .npz, {', '.join(BLENDER_OUTPUTS)})")
