"""Critics D_s and D_u of the SS-WGAN (same design, separate parameters; never exported).

A critic judges a whole rig's skin weights. Its per-vertex input describes the weights
independently of the number of bones J (so one critic serves every skeleton):

* sum_k w_k pair_feat_k      (FP)  weight-averaged (vertex, bone) features
* sum_k w_k bone_feat[cand_k] (FB)  weight-averaged bone features
* row entropy, max weight, soft count of influences above 0.05  (3)
* mean over the neighbour table of the L1 distance between the vertex's weights and the
  neighbour's, compared bone by bone in dense bone space (1)
* the vertex's own geometry features (FV)

then an input MLP, two GraphSAGE layers over the neighbour table, a per-rig mean pool and an
MLP 256 -> 128 -> 1 with no sigmoid (a Wasserstein critic outputs an unbounded score).
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import global_mean_pool

from backend.features.pipeline import FB, FP, FV
from backend.models.generator import NeighborSAGE, mlp

CRITIC_IN = FP + FB + 4 + FV


def neighbor_candidate_weights(w: torch.Tensor, cand: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """Weight each neighbour gives to each of the vertex's own candidate bones.

    w (V, K) candidate weights (padded candidates already zeroed), cand (V, K) bone ids,
    neighbors (V, N) -> (V, N, K) float: out[v, n, k] = sum_k' w[nb, k'] [cand[nb, k'] == cand[v, k]]
    with nb = neighbors[v, n]. Neighbours have their own candidate lists; bones that are not among
    the neighbour's candidates get 0.
    """
    same = (cand[:, None, :, None] == cand[neighbors][:, :, None, :]).to(w.dtype)  # (V, N, K, K')
    return torch.einsum("vnkj,vnj->vnk", same, w[neighbors])


def neighbor_l1(w: torch.Tensor, cand: torch.Tensor, neighbors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(V,) mean over neighbours of the dense L1 distance sum_b |w_v,b - w_n,b|.

    w (V, K) with padded candidates zeroed, mask (V, K) bool (False on padding duplicates).
    The neighbour's mass on bones outside the vertex's candidate list counts fully.
    """
    at = neighbor_candidate_weights(w, cand, neighbors) * mask[:, None, :].to(w.dtype)  # (V, N, K)
    own = (w[:, None, :] - at).abs().sum(-1)  # on the vertex's bones
    outside = (w[neighbors].sum(-1) - at.sum(-1)).clamp_min(0.0)  # neighbour mass elsewhere
    return (own + outside).mean(1)


def critic_inputs(w: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(V, CRITIC_IN) per-vertex description of the weights ``w`` (V, K) for a collated batch
    (keys vertex_feat, neighbors, bone_feat, cand, pair_feat, pair_mask)."""
    mask = batch["pair_mask"].to(w.dtype)
    w = w * mask
    pair = (w[..., None] * batch["pair_feat"][..., :FP]).sum(1)  # (V, FP): the base columns only
    bone = (w[..., None] * batch["bone_feat"][batch["cand"]]).sum(1)  # (V, FB)
    entropy = -(w * torch.log(w.clamp_min(1e-8))).sum(1, keepdim=True)
    wmax = w.max(1, keepdim=True).values
    count = torch.sigmoid((w - 0.05) / 0.01).mul(mask).sum(1, keepdim=True) / 4.0
    l1 = neighbor_l1(w, batch["cand"], batch["neighbors"], batch["pair_mask"])[:, None]
    return torch.cat([pair, bone, entropy, wmax, count, l1, batch["vertex_feat"]], dim=1)


def mean_pool(h: torch.Tensor, graph: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """(V, C) -> (B, C) mean per rig (vertex_graph ids 0..B-1)."""
    return global_mean_pool(h, graph, size=num_graphs)


class Critic(nn.Module):
    """D(w, batch) -> (B,) unbounded score per rig. ``encode`` + ``head`` split it at the pool
    (the unpaired critic's gradient penalty is taken on the pooled embedding)."""

    def __init__(self, hidden: int = 128, c_in: int = CRITIC_IN):
        super().__init__()
        self.config = dict(hidden=hidden, c_in=c_in)
        self.inp = mlp([c_in, hidden, hidden], last_act=True)
        self.sage1 = NeighborSAGE(hidden, hidden)
        self.sage2 = NeighborSAGE(hidden, hidden)
        self.head = mlp([hidden, 256, 128, 1])

    def encode_inputs(self, x: torch.Tensor, batch: dict[str, torch.Tensor], num_graphs: int) -> torch.Tensor:
        """(V, CRITIC_IN) per-vertex inputs -> (B, hidden) pooled embedding."""
        h = self.inp(x)
        h = self.sage1(h, batch["neighbors"])
        h = self.sage2(h, batch["neighbors"])
        return mean_pool(h, batch["vertex_graph"], num_graphs)

    def encode(self, w: torch.Tensor, batch: dict[str, torch.Tensor], num_graphs: int) -> torch.Tensor:
        return self.encode_inputs(critic_inputs(w, batch), batch, num_graphs)

    def score(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, hidden) -> (B,)."""
        return self.head(pooled).squeeze(-1)

    def forward(self, w: torch.Tensor, batch: dict[str, torch.Tensor], num_graphs: int) -> torch.Tensor:
        return self.score(self.encode(w, batch, num_graphs))
