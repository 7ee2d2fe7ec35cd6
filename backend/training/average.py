"""Weight averaging of generator checkpoints ("model soup").

Generators trained from one starting point (warm starts of the same checkpoint with other seeds,
``train --init``) lie in one basin of the loss, so the mean of their parameters is a generator that
usually scores like the mean of their predictions (an ensemble) at the cost of one network. Only
checkpoints with the same architecture, feature configuration and feature version are averaged,
with one exception: a generator without growth layers (backend.models.generator.GROWTH) counts as
the grown one with those layers at their identity start. So the weighted mean of a generator and a
grown warm start of it interpolates between the two functions (weights 1, 0: the first; 0, 1: the
second), the robust fine-tuning recipe of WiSE-FT (Wortsman et al., 2022).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


from backend.inference.model_store import file_sha256
from backend.models.checkpoint import best_score, check_same_features, load_generator_checkpoint, save_generator
from backend.models.generator import GROWTH, is_identity_start
from backend.rig import RigError


def _growth(config: dict) -> dict:
    return {k: int(config.get(k, 0)) for k in GROWTH}


def _target_config(paths: Sequence[str | Path], ckpts: list[dict]) -> dict:
    """The members' common config: the most grown one; RigError unless every other member equals it up
    to smaller growth settings, and shares its feature config and feature version."""
    first = max(range(len(ckpts)), key=lambda i: sum(_growth(ckpts[i]["config"]).values()))
    target = ckpts[first]["config"]
    for p, ck in zip(paths, ckpts):
        a, b = target, ck["config"]
        diff = sorted(k for k in set(a) | set(b) if k not in GROWTH and a.get(k) != b.get(k))
        diff += [k for k in GROWTH if _growth(b)[k] > _growth(a)[k]]
        if diff:
            raise RigError(f"{p}: its config differs from {paths[first]}'s in {diff}: only generators of one "
                           f"architecture (or grown versions of it) and feature set can be averaged")
    check_same_features(paths, ckpts, "only generators of one architecture and feature set can be averaged")
    return target


def average_generators(paths: Sequence[str | Path], out: str | Path,
                       weights: Sequence[float] | None = None) -> Path:
    """Write the (weighted) parameter mean of the generator checkpoints ``paths`` (at least two) to ``out``.

    weights: one non-negative number per checkpoint (normalised to sum 1; None = equal). Refuses
    (RigError naming the file and the setting) checkpoints whose model config, feature config or
    feature version differ from the first one's, except for growth settings: a member without a growth
    layer counts as having it at its identity start, i.e. with 0 for the parameters that make it the
    identity (``is_identity_start``) and the grown members' mean for the layer's other parameters. The
    output is an ordinary generator checkpoint (``load_generator_checkpoint``) whose train_summary lists
    the members, their weights and their hashes.
    """
    if len(paths) < 2:
        raise RigError(f"averaging needs at least two generator checkpoints, got {len(paths)}")
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths) or any(not w >= 0.0 for w in weights) or sum(weights) <= 0.0:
        raise RigError(f"averaging needs one non-negative weight per checkpoint ({len(paths)}), "
                       f"not all zero; got {list(weights)}")
    share = [float(w) / float(sum(weights)) for w in weights]
    ckpts = [load_generator_checkpoint(p)[1] for p in paths]
    for p, ck in zip(paths, ckpts):
        if "members" in ck["config"]:
            raise RigError(f"{p}: an ensemble; average its members' checkpoints, or combine generators "
                           f"with `ensemble`")
    target = _target_config(paths, ckpts)
    grown = [ck for ck in ckpts if ck["config"] == target]
    state = {}
    for name, tensor in grown[0]["state_dict"].items():
        if not tensor.is_floating_point():
            state[name] = tensor.clone()
            continue
        have = [(s, ck["state_dict"][name].double()) for s, ck in zip(share, ckpts) if name in ck["state_dict"]]
        total = sum(s for s, _ in have)
        if is_identity_start(name) or len(have) == len(ckpts):
            mean = sum(s * t for s, t in have)  # members without the layer add their zero
        else:
            mean = sum(s * t for s, t in have) / total if total > 0 else have[0][1]
        state[name] = mean.to(tensor.dtype)
    summary = {"averaged": [{"path": str(p), "sha256": file_sha256(p), "weight": s,
                             "best_score": best_score(ck)}
                            for p, s, ck in zip(paths, share, ckpts)]}
    return save_generator(out, state, target, ckpts[0]["feature_config"], ckpts[0]["feature_version"], summary)
