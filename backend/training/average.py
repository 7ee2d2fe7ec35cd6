"""Weight averaging of generator checkpoints ("model soup").

Generators trained from one starting point (warm starts of the same checkpoint with other seeds,
``train --init``) lie in one basin of the loss, so the mean of their parameters is a generator that
usually scores like the mean of their predictions (an ensemble) at the cost of one network. Only
checkpoints with the same architecture, feature configuration and feature version are averaged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from backend.inference.model_store import file_sha256
from backend.rig import RigError
from backend.training.checkpoint import load_generator_checkpoint, save_generator


def average_generators(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the parameter mean of the generator checkpoints ``paths`` (at least two) to ``out``.

    Refuses (RigError naming the file and the setting) checkpoints whose model config, feature
    config or feature version differ from the first one's. The output is an ordinary generator
    checkpoint (``load_generator_checkpoint``) whose train_summary lists the members and their hashes.
    """
    if len(paths) < 2:
        raise RigError(f"averaging needs at least two generator checkpoints, got {len(paths)}")
    ckpts = [load_generator_checkpoint(p)[1] for p in paths]
    first = ckpts[0]
    for p, ck in zip(paths[1:], ckpts[1:]):
        for key in ("config", "feature_config", "feature_version"):
            if ck[key] != first[key]:
                a, b = first[key], ck[key]
                if isinstance(a, dict) and isinstance(b, dict):
                    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                    raise RigError(f"{p}: its {key} differs from {paths[0]}'s in {diff}: only generators of one "
                                   f"architecture and feature set can be averaged")
                raise RigError(f"{p}: its {key} {b!r} differs from {paths[0]}'s {a!r}")
    state = {}
    for name, tensor in first["state_dict"].items():
        if tensor.is_floating_point():
            state[name] = torch.stack([ck["state_dict"][name].float() for ck in ckpts]).mean(dim=0).to(tensor.dtype)
        else:
            state[name] = tensor.clone()
    summary = {"averaged": [{"path": str(p), "sha256": file_sha256(p),
                             "best_score": ck.get("train_summary", {}).get("best_score")} for p, ck in zip(paths, ckpts)]}
    return save_generator(out, state, first["config"], first["feature_config"], first["feature_version"], summary)
