"""The resumable state of a training run (``state.pt``) and its random-generator states.

``state.pt`` holds the models, optimisers, schedulers, RNG states and the position, made of tensors,
numbers, strings, lists and dicts only: it is written with ``backend.models.checkpoint.save_torch``
(atomically) and read with ``load_torch_file`` (``weights_only=True``), which refuses a file holding
any other object. Generator checkpoints (``best_generator.pt``) are ``backend.models.checkpoint``'s.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.models.checkpoint import load_torch_file
from backend.rig import RigError


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
