"""Generator constraints / bone-permutation equivariance and critic behaviour (tiny widths)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.features.batch import collate
from backend.features.pipeline import FeatureConfig, compute_features
from backend.models.critic import CRITIC_IN, Critic, critic_inputs
from backend.models.generator import Generator
from conftest import make_capsule_chain

CFG = FeatureConfig(distance="euclidean", k_bones=3)


@pytest.fixture(scope="module")
def feats():
    a = compute_features(make_capsule_chain(n_bones=4, segments=8, rings=10), CFG)
    b = compute_features(make_capsule_chain(n_bones=2, length=2.0, segments=8, rings=8), CFG)  # K = 2: padded
    return a, b


def tensors(arrays):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def gen_inputs(b):
    return b["vertex_feat"], b["neighbors"], b["bone_feat"], b["cand"], b["pair_feat"], b["prior"]


def test_generator_rows_are_nonnegative_and_sum_to_one(feats):
    torch.manual_seed(0)
    G = Generator(hidden=16, fused=16).eval()
    b = tensors(collate(list(feats)))
    with torch.no_grad():
        w = G(*gen_inputs(b))
    assert w.shape == b["cand"].shape
    assert (w >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(w.shape[0]), atol=1e-5)
    # padded candidates (prior 0) get almost nothing
    assert w[~b["pair_mask"]].max() < 1e-3


def test_generator_is_bone_permutation_equivariant(feats):
    torch.manual_seed(0)
    G = Generator(hidden=16, fused=16).eval()
    f = feats[0]
    b = tensors(f.model_inputs())
    perm = torch.tensor([2, 0, 3, 1])
    inv = torch.argsort(perm)  # new index of old bone j is inv[j]
    b2 = dict(b, bone_feat=b["bone_feat"][perm], cand=inv[b["cand"]])
    with torch.no_grad():
        w1, w2 = G(*gen_inputs(b)), G(*gen_inputs(b2))
    # same weight for every (vertex, bone) pair
    assert torch.allclose(w1, w2, atol=1e-6)
    d1 = torch.zeros(len(w1), 4).scatter_add(1, b["cand"], w1)
    d2 = torch.zeros(len(w2), 4).scatter_add(1, b2["cand"], w2)
    assert torch.allclose(d1, d2[:, inv], atol=1e-6)


def test_relative_inputs_ignore_where_the_character_sits(feats):
    from backend.features.pipeline import BONE_POSITION_COLUMNS, VERTEX_POSITION_COLUMNS

    b = tensors(feats[0].model_inputs())
    moved = dict(b)
    moved["vertex_feat"] = b["vertex_feat"].clone()
    moved["vertex_feat"][:, list(VERTEX_POSITION_COLUMNS)] += torch.tensor([0.3, -0.2, 0.5])
    moved["bone_feat"] = b["bone_feat"].clone()
    moved["bone_feat"][:, list(BONE_POSITION_COLUMNS)] += torch.tensor([0.3, -0.2, 0.5] * 2)
    for relative in (False, True):
        torch.manual_seed(0)
        G = Generator(hidden=16, fused=16, relative_inputs=relative).eval()
        with torch.no_grad():
            diff = (G(*gen_inputs(b)) - G(*gen_inputs(moved))).abs().max().item()
        if relative:
            assert diff < 1e-6
        else:
            assert diff > 1e-4  # the default model does see absolute positions
    # the masks follow the config and are not part of the weights
    G = Generator(hidden=16, fused=16, relative_inputs=True)
    assert "vertex_mask" not in G.state_dict()
    assert Generator(**G.config).relative_inputs


def random_weights(shape, seed):
    w = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return w / w.sum(1, keepdim=True)


def test_critic_scores_each_rig_and_is_unbounded(feats):
    torch.manual_seed(0)
    D = Critic(hidden=16)
    b = tensors(collate(list(feats)))
    w = random_weights(b["cand"].shape, 0)
    x = critic_inputs(w, b)
    assert x.shape == (w.shape[0], CRITIC_IN)
    s = D(w, b, 2)
    assert s.shape == (2,)
    # the score of rig 0 does not depend on rig 1 being in the batch
    n0 = feats[0].vertex_feat.shape[0]
    b0 = tensors(collate([feats[0]]))
    assert torch.allclose(D(w[:n0], b0, 1), s[:1], atol=1e-5)
    # no squashing (WGAN): scaling the head's last layer scales the score linearly
    with torch.no_grad():
        before = s - D.head[-1].bias
        D.head[-1].weight.mul_(1000.0)
        D.head[-1].bias.zero_()
        assert torch.allclose(D(w, b, 2), 1000.0 * before, rtol=1e-4, atol=1e-4)


def test_critic_is_invariant_to_bone_and_candidate_order(feats):
    torch.manual_seed(0)
    D = Critic(hidden=16).eval()
    b = tensors(feats[0].model_inputs())
    b.update(vertex_graph=torch.zeros(len(b["cand"]), dtype=torch.long),
             pair_mask=torch.ones(b["cand"].shape, dtype=torch.bool))
    w = random_weights(b["cand"].shape, 1)
    perm = torch.tensor([3, 1, 0, 2])
    inv = torch.argsort(perm)
    kperm = torch.tensor([2, 0, 1])
    b2 = dict(b, bone_feat=b["bone_feat"][perm], cand=inv[b["cand"]][:, kperm], pair_feat=b["pair_feat"][:, kperm])
    with torch.no_grad():
        assert torch.allclose(D(w, b, 1), D(w[:, kperm], b2, 1), atol=1e-5)


def test_critic_input_sees_neighbour_disagreement(feats):
    b = tensors(feats[0].model_inputs())
    b["pair_mask"] = torch.ones(b["cand"].shape, dtype=torch.bool)
    K = b["cand"].shape[1]
    smooth = torch.zeros(b["cand"].shape)
    smooth[:, 0] = 1.0  # every vertex fully on its nearest bone: neighbours mostly agree
    noisy = torch.zeros(b["cand"].shape)
    noisy[torch.arange(len(noisy)), torch.arange(len(noisy)) % K] = 1.0  # alternating bones
    l1_smooth = critic_inputs(smooth, b)[:, -11].mean()
    l1_noisy = critic_inputs(noisy, b)[:, -11].mean()
    assert l1_noisy > l1_smooth + 0.3


def open_growth(G: Generator, seed: int = 1) -> None:
    """Give a grown generator's identity-start layers non-trivial values (as training would)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in G.context:
            layer.gate.fill_(0.5)
        if G.attention is not None:
            G.attention.out.weight.copy_(0.2 * torch.randn(G.attention.out.weight.shape, generator=gen))


def test_grown_generator_starts_as_the_old_one(feats):
    torch.manual_seed(0)
    old = Generator(hidden=16, fused=16).eval()
    grown = Generator(hidden=16, fused=16, context_layers=2, pair_attention=2).eval()
    result = grown.load_state_dict(old.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("context.", "attention.")) for k in result.missing_keys)
    assert grown.config["context_layers"] == 2 and grown.config["pair_attention"] == 2
    assert "pair_attention" not in old.config  # older checkpoints' configs stay equal
    b = tensors(collate(list(feats)))
    with torch.no_grad():
        w_old, w_new = old(*gen_inputs(b)), grown(*gen_inputs(b))
        torch.testing.assert_close(w_new, w_old, atol=1e-7, rtol=0)
        open_growth(grown)
        w_open = grown(*gen_inputs(b))
    assert (w_open - w_old).abs().max() > 1e-3
    assert torch.allclose(w_open.sum(1), torch.ones(len(w_open)), atol=1e-5)


def test_candidate_attention_is_order_equivariant_and_ignores_padding(feats):
    torch.manual_seed(0)
    G = Generator(hidden=16, fused=16, pair_attention=2).eval()
    open_growth(G)
    b = tensors(collate(list(feats)))  # the 2-bone rig's rows have a padded third candidate
    b = {k: b[k] for k in ("vertex_feat", "neighbors", "bone_feat", "cand", "pair_feat", "prior")}
    pad = b["prior"] <= 0
    assert pad.any()
    perm = torch.tensor([2, 0, 1])
    b2 = dict(b, cand=b["cand"][:, perm], pair_feat=b["pair_feat"][:, perm], prior=b["prior"][:, perm])
    noisy = dict(b, pair_feat=torch.where(pad[..., None], b["pair_feat"] + 5.0, b["pair_feat"]))
    with torch.no_grad():
        w = G(*gen_inputs(b))
        torch.testing.assert_close(G(*gen_inputs(b2)), w[:, perm], atol=1e-6, rtol=0)
        # what a padded candidate holds reaches no other candidate
        torch.testing.assert_close(G(*gen_inputs(noisy)), w, atol=1e-6, rtol=0)
    assert (w[pad] == 0).all()
