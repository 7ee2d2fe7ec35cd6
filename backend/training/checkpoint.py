"""Checkpoints of a training run, and the generator file the export step loads.

For the export engineer: ``best_generator.pt`` (in the run folder) is a ``torch.save`` dict
``{"state_dict", "config", "feature_config", "feature_version", "train_summary"}``:

    from backend.training.checkpoint import load_generator_checkpoint
    model, meta = load_generator_checkpoint("runs/NAME/best_generator.pt")
    # model: backend.models.generator.generator_from_config(meta["config"]) in eval mode, on CPU
    # (a Generator, or a GeneratorEnsemble of several)
    # meta: the whole checkpoint dict (state_dict included)
    # meta["feature_config"]: FeatureConfig fields (FeatureConfig(**meta["feature_config"]))
    # meta["feature_version"]: backend.features.pipeline.FEATURE_VERSION at training time

``state.pt`` is the full resumable state (models, optimisers, schedulers, RNG states, position), made
of tensors, numbers, strings, lists and dicts only: both files are read with ``weights_only=True``
and a file holding any other object is refused. Both are written atomically (temporary file, fsync,
rename).
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from backend.io.atomic import atomic_path
from backend.rig import RigError

#: Phrases of torch's weights-only unpickler that mean the file names a Python object (not a corrupt file).
OBJECT_REFUSALS = ("GLOBAL", "Can only build", "Can only create")
#: Plain numpy arrays (no object arrays: those need pickle) are allowed too: states written before the
#: RNG states were stored as tensors hold numpy's generator state as an array.
NUMPY_ARRAYS = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
GENERATOR_KEYS = ("state_dict", "config", "feature_config", "feature_version", "train_summary")


def save_torch(obj: Any, path: str | Path) -> Path:
    """torch.save through a temporary file + rename (a crash never leaves a half-written file)."""
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(obj, tmp)
    return path


def state_dict_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all().item() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


def save_generator(path: str | Path, state_dict: dict[str, torch.Tensor], config: dict, feature_config: dict,
                   feature_version: str, train_summary: dict) -> Path:
    """Write ``best_generator.pt``; refuses non-finite weights (RigError)."""
    state_dict = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    if not state_dict_finite(state_dict):
        raise RigError(f"{path}: refusing to save a generator with NaN/inf parameters")
    return save_torch({"state_dict": state_dict, "config": dict(config), "feature_config": dict(feature_config),
                       "feature_version": feature_version, "train_summary": dict(train_summary)}, path)


def best_score(ckpt: dict) -> float | None:
    """The validation score a generator checkpoint was kept for: ``best_generator.pt`` from ``train`` stores
    it as ``val_score``, averages and ensembles of earlier versions as ``best_score``; None when absent."""
    summary = ckpt.get("train_summary") or {}
    score = summary.get("best_score", summary.get("val_score"))
    return float(score) if isinstance(score, (int, float)) else None


def check_same_features(paths: Sequence[str | Path], ckpts: Sequence[dict], purpose: str) -> None:
    """RigError naming the file and the differing settings unless every checkpoint's feature_config and
    feature_version equal the first one's; ``purpose`` ends the message (what the sameness is for)."""
    for p, ck in zip(paths, ckpts):
        for key in ("feature_config", "feature_version"):
            a, b = ckpts[0][key], ck[key]
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise RigError(f"{p}: its {key} differs from {paths[0]}'s in {diff}: {purpose}")
            raise RigError(f"{p}: its {key} {b!r} differs from {paths[0]}'s {a!r}: {purpose}")


def load_generator_checkpoint(path: str | Path, map_location: str = "cpu"):
    """-> (Generator or GeneratorEnsemble in eval mode, the checkpoint dict: state_dict, config, feature_config, feature_version, train_summary)."""
    from backend.models.generator import generator_from_config

    path = Path(path)
    if not path.is_file():
        raise RigError(f"{path}: no such generator checkpoint")
    ckpt = load_torch_file(path, "generator checkpoint", map_location)
    if not isinstance(ckpt, dict):
        raise RigError(f"{path}: not a generator checkpoint (a {type(ckpt).__name__}, not a dict)")
    if "G" in ckpt and "pos" in ckpt and "state_dict" not in ckpt:
        raise RigError(f"{path}: a resumable training state, not a generator checkpoint; use "
                       f"{path.with_name('best_generator.pt')} (written by the same run)")
    missing = [k for k in GENERATOR_KEYS if k not in ckpt]
    if missing:
        raise RigError(f"{path}: generator checkpoint lacks {missing}")
    try:
        model = generator_from_config(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise RigError(f"{path}: bad generator config ({exc})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise RigError(f"{path}: weights do not match its config ({exc})") from None
    model.eval()
    return model, dict(ckpt)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when present) generator states, as tensors, numbers,
    strings and lists only (what ``torch.load(weights_only=True)`` reads back)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
           "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (or its older form, with tuples and a numpy array)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in np.asarray(internal).tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a resumable ``state.pt`` (tensors, numbers, strings, lists and dicts only)."""
    path = Path(path)
    if not path.is_file():
        raise RigError(f"{path}: no checkpoint to resume from")
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict):
        raise RigError(f"{path}: not a training state (a {type(state).__name__}, not a dict)")
    return state


def load_torch_file(path: Path, what: str, map_location: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``: only tensors, numbers, strings, lists and dicts are read, so a
    file holding any other object is refused, never run. RigError in one line naming ``path``."""
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAYS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if any(phrase in str(exc) for phrase in OBJECT_REFUSALS):
            raise RigError(f"{path}: holds objects other than tensors, numbers, strings, lists and dicts; "
                           f"refused, as loading them could run code") from None
        raise RigError(f"{path}: not a readable {what} (truncated, corrupt or not a torch file)") from None
    except Exception as exc:  # noqa: BLE001 -- torch raises many kinds for a truncated or foreign file
        raise RigError(f"{path}: not a readable {what} (truncated, corrupt or not a torch file: "
                       f"{type(exc).__name__}: {first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's load errors run over many lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
