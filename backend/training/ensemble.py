"""Combine generator checkpoints into one ensemble checkpoint (the mean of their predictions).

The output loads like any generator checkpoint (``load_generator_checkpoint`` rebuilds a
``GeneratorEnsemble``), so ``export``, ``evaluate`` and fine-tuning take it unchanged. Members must
share the feature configuration and feature version (refused otherwise, naming the file and the
setting); an ensemble given as a member contributes its own members with their shares.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from backend.inference.model_store import file_sha256
from backend.models.checkpoint import best_score, check_same_features, load_generator_checkpoint, save_generator
from backend.rig import RigError


def _flatten(ckpt: dict, share: float) -> list[tuple[dict, dict, float]]:
    """[(member config, member state_dict, share)] of one checkpoint; an ensemble's members in order."""
    cfg, state = ckpt["config"], ckpt["state_dict"]
    if "members" not in cfg:
        return [(cfg, state, share)]
    out = []
    for i, (mcfg, s) in enumerate(zip(cfg["members"], cfg["shares"])):
        prefix = f"members.{i}."
        out.append((mcfg, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, share * s))
    return out


def ensemble_generators(paths: Sequence[str | Path], out: str | Path,
                        weights: Sequence[float] | None = None) -> Path:
    """Write an ensemble of the generator checkpoints ``paths`` (at least two) to ``out``.

    weights: one positive number per checkpoint (normalised to sum 1; None = equal). Its
    train_summary lists the members' paths, shares, hashes and best scores.
    """
    if len(paths) < 2:
        raise RigError(f"an ensemble needs at least two generator checkpoints, got {len(paths)}")
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths) or any(not w > 0.0 for w in weights):
        raise RigError(f"an ensemble needs one positive weight per checkpoint ({len(paths)}), got {list(weights)}")
    share = [float(w) / float(sum(weights)) for w in weights]
    ckpts = [load_generator_checkpoint(p)[1] for p in paths]
    check_same_features(paths, ckpts, "ensemble members must take the same features")
    parts = [m for ck, s in zip(ckpts, share) for m in _flatten(ck, s)]
    config = {"members": [dict(c) for c, _, _ in parts], "shares": [s for _, _, s in parts]}
    state = {f"members.{i}.{k}": v for i, (_, sd, _) in enumerate(parts) for k, v in sd.items()}
    from backend.models.ensemble import GeneratorEnsemble

    try:
        model = GeneratorEnsemble(config["members"], config["shares"])
        model.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise RigError(f"these checkpoints cannot form an ensemble: {exc}") from None
    summary = {"ensemble": [{"path": str(p), "sha256": file_sha256(p), "weight": s,
                             "best_score": best_score(ck)}
                            for p, s, ck in zip(paths, share, ckpts)]}
    return save_generator(out, model.state_dict(), model.config, ckpts[0]["feature_config"],
                          ckpts[0]["feature_version"], summary)
