"""Adapt a generator to a studio's style: refit the post-network settings (backend.training.style),
then train the generator's scoring head on the corrections with some replay of the training split.

Only the per-pair scorer MLPs and the prior gains are trained (``HEAD``: the last layers of every
member of an ensemble); features, graph layers and fusion stay as they are, so a few corrected
characters move how candidates are scored without unlearning shape. The loss is the fine-tuning's
weighted L_sup (backend.training.losses.weighted_supervised_loss) on what the runtime will output
before clean-up: ``(1 - q) (b G + (1 - b) P) + q Q`` with the refitted blend b and geodesic share q,
so the head learns what the mix still misses.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from backend.features.pipeline import RigFeatures
from backend.training.data import Sample, candidate_targets, collate_samples, connected_crop, crop_sample
from backend.training.losses import weighted_supervised_loss
from backend.training.style import (MAX_HELD_OUT_COST, RigCase, StyleFit, StyleSettings, relative_cost, rig_outputs,
                                    score_table)

#: Parameter name parts of the trained head.
HEAD = ("scorer.", "prior_gain")


@dataclass
class TrainOptions:
    """steps: optimiser steps on the corrections (the most :func:`loo_steps` tries); lr: AdamW learning
    rate of the head; replay_every: one replay step after every this many correction steps (0 = none);
    crop: largest rig part (vertices) per step; seed: crop and replay order."""

    steps: int = 40
    lr: float = 3e-3
    replay_every: int = 2
    crop: int = 1500
    seed: int = 0


def case_sample(case: RigCase) -> Sample:
    """A training sample of a prepared case: its runtime features and candidate targets."""
    f = case.feats
    if case.target is None:
        raise ValueError(f"{case.name}: no true weights to learn from")
    t, valid, mass = candidate_targets(case.target, f.cand, f.deform_index)
    return Sample(name=case.name, vertex_feat=f.vertex_feat, neighbors=f.neighbors, bone_feat=f.bone_feat,
                  cand=f.cand, pair_feat=f.pair_feat, prior=f.prior, deform_index=f.deform_index,
                  num_bones=f.num_bones, target=t, row_valid=valid, labeled=True, coverage=float(mass.mean()))


def head_parameters(G: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The head's parameters (trainable); every other parameter is frozen. RuntimeError when none."""
    keep = []
    for name, p in G.named_parameters():
        p.requires_grad_(any(h in name for h in HEAD))
        if p.requires_grad:
            keep.append(p)
    if not keep:
        raise RuntimeError("the generator has no scorer head to adapt")
    return keep


def runtime_mix(w: torch.Tensor, t: dict, blend: torch.Tensor, geodesic: float) -> torch.Tensor:
    """(V, K) the runtime's mix of generator output ``w`` with the prior and the geodesic falloff.
    blend (V,) per row; the falloff comes from the candidates' distance column."""
    from backend.features.geodesic import geodesic_weights
    from backend.inference.model_meta import DISTANCE_COLUMN

    out = blend[:, None] * w + (1.0 - blend[:, None]) * t["prior"]
    if geodesic > 0.0:
        q = torch.from_numpy(geodesic_weights(t["pair_feat"][:, :, DISTANCE_COLUMN].numpy()))
        q = q * (t["prior"] > 0).to(q.dtype)
        out = (1.0 - geodesic) * out + geodesic * q / q.sum(1, keepdim=True).clamp_min(1e-12)
    return out


def _step_tensors(samples: Sequence[Sample], blends: Sequence[float], crop: int,
                  rng: np.random.Generator) -> tuple[dict, torch.Tensor]:
    parts = []
    for s in samples:
        parts.append(crop_sample(s, connected_crop(s.neighbors, crop, rng)) if s.num_vertices > crop else s)
    b = collate_samples(parts)
    blend = torch.cat([torch.full((p.num_vertices,), float(x)) for p, x in zip(parts, blends)])
    return dict(b.tensors), blend


def train_head(G: torch.nn.Module, samples: Sequence[Sample], blends: Sequence[float], settings: StyleSettings,
               replay: Sequence[Sample] = (), replay_blend: float = 1.0, options: TrainOptions = TrainOptions(),
               on_step: Optional[Callable[[int, torch.nn.Module], None]] = None) -> tuple[torch.nn.Module, dict]:
    """A copy of ``G`` whose head is trained on ``samples`` (each with its runtime blend) under the
    refitted ``settings``; ``replay`` samples (original training rigs) interleaved. ``on_step(n, G)``
    is called after each of the ``options.steps`` steps with G in eval mode. -> (G, info)."""
    t0 = time.perf_counter()
    G = copy.deepcopy(G).cpu()
    G.train()
    params = head_parameters(G)
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    rng = np.random.default_rng(options.seed)
    losses = []
    n_replay = 0
    for step in range(options.steps):
        kinds = [("c", samples, blends)]
        if replay and options.replay_every and (step + 1) % options.replay_every == 0:
            kinds.append(("r", [replay[n_replay % len(replay)]], [replay_blend]))
            n_replay += 1
        for kind, ss, bs in kinds:
            t, blend = _step_tensors(ss, bs, options.crop, rng)
            w = G(t["vertex_feat"], t["neighbors"], t["bone_feat"], t["cand"], t["pair_feat"], t["prior"])
            geo = settings.geodesic if kind == "c" else 0.0
            mixed = runtime_mix(w, t, blend, geo)
            loss, _, _ = weighted_supervised_loss(mixed, t["target"], t["pair_mask"], t["row_valid"],
                                                  torch.ones_like(blend))
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            if kind == "c":
                losses.append(float(loss.detach()))
        if on_step is not None:
            G.eval()
            on_step(step + 1, G)
            G.train()
    G.eval()
    for p in G.parameters():
        p.requires_grad_(True)
    return G, {"steps": options.steps, "replay_steps": n_replay, "train_seconds": time.perf_counter() - t0,
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}


def torch_net(G: torch.nn.Module):
    """A generator as a :data:`backend.training.style.NetFn` (no gradients)."""

    @torch.no_grad()
    def run(feats: RigFeatures) -> np.ndarray:
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feats.model_inputs().items()}
        return G(t["vertex_feat"], t["neighbors"], t["bone_feat"], t["cand"], t["pair_feat"], t["prior"]).numpy()

    return run


def replay_samples(data: Path, feature_config, count: int = 8, crop: int = 1500, seed: int = 0,
                   cache: Optional[Path] = None) -> list[Sample]:
    """``count`` rigs of ``data/train`` (every n-th, cropped to ``crop`` vertices) as replay samples,
    with the runtime's candidates (helper bones left out); features come from the training cache."""
    from backend.training.data import FeatureStore, list_rigs

    paths = list_rigs(Path(data) / "train")
    pick = paths[:: max(len(paths) // count, 1)][:count]
    store = FeatureStore(cache or Path("runs") / "cache", feature_config, skip_helpers=True)
    rng = np.random.default_rng(seed)
    out = []
    for p in pick:
        s = store.sample(p)
        out.append(crop_sample(s, connected_crop(s.neighbors, crop, rng)) if s.num_vertices > crop else s)
    return out


#: Step counts the leave-one-out stopping rule compares (0 = no head training).
STOPS = (0, 10, 20, 40, 80)


def head_settings(s: StyleSettings) -> StyleSettings:
    """The settings a trained head runs with: the refitted ones with the model's own blend (a refitted
    blend of 0 would leave the trained generator unused)."""
    return StyleSettings(None, s.sharpen, s.diffuse, s.geodesic)


@dataclass
class LooSteps:
    """What leave-one-correction-out found: ``best`` step count (lowest mean cost), ``mean`` {count: mean
    held-out cost}, ``each`` {count: each held-out correction's cost}, ``scores`` {count: (k, 2) held-out
    (L1, deformation %)} and ``base`` (k, 2) the base model's on the same corrections (count 0 = the
    refitted settings alone)."""

    best: int
    mean: dict
    each: dict
    scores: dict
    base: np.ndarray

    @property
    def refused(self) -> bool:
        """Even the best count is not :data:`~backend.training.style.MIN_GAIN` better than the base on the
        held-out corrections (mean cost >= ``MAX_HELD_OUT_COST``): ``adapt`` publishes nothing."""
        return self.mean[self.best] >= MAX_HELD_OUT_COST


def loo_steps(cases: Sequence[RigCase], fit: StyleFit, G0: torch.nn.Module, replay: Sequence[Sample],
              replay_blend: float, options: TrainOptions, smooth: int = 0) -> LooSteps:
    """When to stop, by leave-one-correction-out: for each correction, refit the settings and train the
    head on the others (up to ``options.steps``) and score the one left out after each count of
    :data:`STOPS` (cost relative to the base model's settings; count 0 = the refitted settings alone).
    Needs >= 2 cases."""
    stops = [n for n in STOPS if 0 < n <= options.steps]
    scores: dict[int, list] = {n: [] for n in [0] + stops}
    base = []
    samples = [case_sample(c) for c in cases]
    opts = TrainOptions(**{**options.__dict__, "steps": max(stops, default=1)})
    for i in range(len(cases)):
        rest = [j for j in range(len(cases)) if j != i]
        choice = fit.loo_choices[i]
        s = head_settings(choice)
        base_out = rig_outputs(cases[i], torch_net(G0), sorted({fit.reference.diffuse, choice.diffuse}), smooth)
        ref = score_table([base_out], [fit.reference, choice])[0]  # (2 settings, 2 scores)
        base.append(ref[0])
        scores[0].append(ref[1])

        def at(n: int, G: torch.nn.Module, i: int = i, s: StyleSettings = s) -> None:
            if n in scores and n > 0:
                out = rig_outputs(cases[i], torch_net(G), [s.diffuse], smooth)
                scores[n].append(score_table([out], [s])[0, 0])

        if stops:
            train_head(G0, [samples[j] for j in rest], [cases[j].model_blend for j in rest], s, replay,
                       replay_blend, opts, on_step=at)
    b = np.array(base)
    got = {n: np.array(v) for n, v in scores.items() if v}
    each = {n: relative_cost(np.stack([b, v], axis=1), 0)[:, 1].tolist() for n, v in got.items()}
    mean = {n: float(np.mean(v)) for n, v in each.items()}
    return LooSteps(min(mean, key=lambda n: (mean[n], n)), mean, each, got, b)
