"""Generator checkpoints: the file layout, saving, loading, rebuilding the network, warm starts.

A generator checkpoint (``best_generator.pt`` of a run, the output of ``average``, ``ensemble`` and
``finetune``) is a ``torch.save`` dict ``{"state_dict", "config", "feature_config", "feature_version",
"train_summary"}``:

    from backend.models.checkpoint import load_generator_checkpoint
    model, meta = load_generator_checkpoint("runs/NAME/best_generator.pt")
    # model: generator_from_config(meta["config"]) in eval mode, on CPU
    # (a Generator, or a GeneratorEnsemble of several)
    # meta: the whole checkpoint dict (state_dict included)
    # meta["feature_config"]: FeatureConfig fields (FeatureConfig(**meta["feature_config"]))
    # meta["feature_version"]: backend.features.pipeline.FEATURE_VERSION at training time

Every torch file of the project is read here (:func:`load_torch_file`) with ``weights_only=True``:
tensors, numbers, strings, lists and dicts only; a file holding any other object is refused, never
run. Files are written atomically (temporary file, fsync, rename).
"""
from __future__ import annotations

import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.io.atomic import atomic_path
from backend.models.ensemble import GeneratorEnsemble
from backend.models.generator import GROWTH, Generator
from backend.rig import RigError

#: Phrases of torch's weights-only unpickler that mean the file names a Python object (not a corrupt file).
OBJECT_REFUSALS = ("GLOBAL", "Can only build", "Can only create")
#: Plain numpy arrays (no object arrays: those need pickle) are allowed too: states written before the
#: RNG states were stored as tensors hold numpy's generator state as an array.
NUMPY_ARRAYS = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
GENERATOR_KEYS = ("state_dict", "config", "feature_config", "feature_version", "train_summary")


# --------------------------------------------------------------------------------------- files
def save_torch(obj: Any, path: str | Path) -> Path:
    """torch.save through a temporary file + rename (a crash never leaves a half-written file)."""
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(obj, tmp)
    return path


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


# --------------------------------------------------------------------------------------- generator files
def state_dict_finite(state: dict[str, torch.Tensor]) -> bool:
    """No NaN or inf in any floating-point tensor of ``state``."""
    return all(torch.isfinite(v).all().item() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


def save_generator(path: str | Path, state_dict: dict[str, torch.Tensor], config: dict, feature_config: dict,
                   feature_version: str, train_summary: dict) -> Path:
    """Write a generator checkpoint; refuses non-finite weights (RigError)."""
    state_dict = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    if not state_dict_finite(state_dict):
        raise RigError(f"{path}: refusing to save a generator with NaN/inf parameters")
    return save_torch({"state_dict": state_dict, "config": dict(config), "feature_config": dict(feature_config),
                       "feature_version": feature_version, "train_summary": dict(train_summary)}, path)


def checkpoint_dict(model: nn.Module, feature_config: FeatureConfig, train_summary: dict | None = None) -> dict:
    """A generator checkpoint of ``model`` (what :func:`save_generator` writes, tensors not copied)."""
    return {
        "state_dict": model.state_dict(),
        "config": dict(model.config),
        "feature_config": asdict(feature_config),
        "feature_version": FEATURE_VERSION,
        "train_summary": train_summary or {},
    }


def generator_from_config(config: dict) -> nn.Module:
    """The generator a checkpoint's config describes: a Generator, or a GeneratorEnsemble when the
    config lists ``members``."""
    if "members" in config:
        return GeneratorEnsemble(config["members"], config.get("shares"))
    return Generator(**config)


def load_generator_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """-> (Generator or GeneratorEnsemble in eval mode, the checkpoint dict: state_dict, config,
    feature_config, feature_version, train_summary). RigError naming ``path`` for a missing,
    unreadable or inconsistent file."""
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


# --------------------------------------------------------------------------------------- warm start
def warm_start(G: Generator, path: str | Path, kwargs: dict) -> None:
    """Load a checkpoint's generator weights into ``G`` (built from ``kwargs``); RigError when the
    checkpoint's architecture differs, except that ``G`` may add growth layers
    (backend.models.generator.GROWTH), which keep their identity start. The features may differ (a
    warm start adapts to them)."""
    old, _ = load_generator_checkpoint(path)  # RigError when unreadable or its weights do not fit its config
    if "members" in old.config:
        raise RigError(f"{path}: an ensemble of {len(old.config['members'])} generators; warm-start from "
                       f"one of its members' checkpoints")
    was = {k: old.config.get(k, 0 if k in GROWTH else None) for k in kwargs}  # growth absent = 0
    differ = {k: (was[k], v) for k, v in kwargs.items() if was[k] != v}
    grown = {k for k, (before, now) in differ.items() if k in GROWTH and before < now}
    rest = {k: v for k, v in differ.items() if k not in grown}
    if rest:
        raise RigError(f"{path}: cannot warm-start from it, its generator differs from this run's "
                       f"(settings (checkpoint, this run): {rest})")
    result = G.load_state_dict(old.state_dict(), strict=False)
    new_prefixes = tuple(GROWTH[k] for k in grown)
    stray = [k for k in result.missing_keys if not k.startswith(new_prefixes)] + list(result.unexpected_keys)
    if stray:  # cannot happen when the configs agree; guards against a changed Generator
        raise RigError(f"{path}: its weights do not fit this run's generator ({stray[:5]})")
