"""An ensemble of generators: the weighted mean of their predictions, one network to export.

Generators trained on one feature set but on other seeds or recipes err in different places; the mean
of their (V, K) predictions (rows of each sum to 1, so the mean's rows do too) is usually better than
any one of them, at the cost of running each member. Unlike a parameter average (``average``), the
members need not share a basin or an architecture, only the feature inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from backend.features.pipeline import FP
from backend.models.generator import Generator


class GeneratorEnsemble(nn.Module):
    """G_ens(inputs) = sum_i share_i * G_i(inputs): (V, K) weights, >= 0, rows sum to 1.

    members: generators taking the same inputs (same ``fp``); shares: one positive number each
    (normalised to sum 1). ``config`` holds the members' configs and shares, so
    ``backend.models.checkpoint.generator_from_config(config)`` rebuilds it and checkpoints load like
    a single generator's.
    """

    def __init__(self, members: list[dict], shares: list[float] | None = None):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        shares = [1.0] * len(members) if shares is None else [float(s) for s in shares]
        if len(shares) != len(members) or any(not s > 0.0 for s in shares):
            raise ValueError(f"an ensemble needs one positive share per member ({len(members)}), got {shares}")
        fps = {m.get("fp", FP) for m in members}
        if len(fps) != 1:
            raise ValueError(f"ensemble members take different pair features (fp {sorted(fps)})")
        total = sum(shares)
        self.shares = [s / total for s in shares]
        self.members = nn.ModuleList(Generator(**m) for m in members)
        self.config = {"members": [dict(m.config) for m in self.members], "shares": list(self.shares),
                       "fp": self.members[0].config["fp"]}

    def forward(self, vertex_feat: torch.Tensor, neighbors: torch.Tensor, bone_feat: torch.Tensor,
                cand: torch.Tensor, pair_feat: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        out = None
        for share, g in zip(self.shares, self.members):
            w = share * g(vertex_feat, neighbors, bone_feat, cand, pair_feat, prior)
            out = w if out is None else out + w
        return out
