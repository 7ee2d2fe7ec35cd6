"""Loss terms of the SS-WGAN against hand-computed values and dense references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.models.critic import neighbor_candidate_weights, neighbor_l1
from backend.training.losses import (consistency_loss, gradient_penalty, locality_loss, masked_mse, pooled_pairs,
                                     row_cosine, smoothness_loss, supervised_loss, total_loss, wgan_critic_loss,
                                     wgan_generator_loss)


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def test_masked_mse_and_cosine_by_hand():
    pred = t([[0.5, 0.5], [1.0, 0.0]])
    target = t([[1.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    # squared errors on the mask: 0.25, 0.25, 0 -> mean 1/6
    assert masked_mse(pred, target, mask).item() == pytest.approx(0.5 / 3)
    # cos row 0 = 0.5 / (sqrt(0.5) * 1) = 1/sqrt(2); row 1 = 1
    assert row_cosine(pred, target, torch.tensor([True, True])).item() == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    assert row_cosine(pred, target, torch.tensor([True, False])).item() == pytest.approx(1 / math.sqrt(2))


def test_supervised_loss_respects_pair_mask_and_valid_rows():
    pred = t([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0]])
    target = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False], [True, True, False]])
    valid = torch.tensor([True, True, False])  # row 2 has no true weight: ignored
    loss, mse, cos = supervised_loss(pred, target, mask, valid, cos_lambda=0.1)
    exp_mse = (0.16 + 0.16 + 0.04 + 0.04) / 4
    exp_cos = (0.6 / math.sqrt(0.52) + 0.8 / math.sqrt(0.68)) / 2
    assert mse.item() == pytest.approx(exp_mse)
    assert cos.item() == pytest.approx(exp_cos, rel=1e-6)
    assert loss.item() == pytest.approx(exp_mse - 0.1 * exp_cos, rel=1e-6)
    # a padded candidate's (tiny) weight does not count
    pred2 = pred.clone()
    pred2[:, 2] = 0.3
    assert supervised_loss(pred2, target, mask, valid)[1].item() == pytest.approx(exp_mse)


def dense(w, cand, J):
    out = np.zeros((w.shape[0], J))
    for v in range(w.shape[0]):
        for k in range(w.shape[1]):
            out[v, cand[v, k]] += w[v, k]
    return out


@pytest.fixture
def graph():
    rng = np.random.default_rng(3)
    V, K, J, N = 7, 3, 6, 4
    cand = np.stack([rng.choice(J, K, replace=False) for _ in range(V)])
    w = rng.random((V, K)).astype(np.float32)
    w /= w.sum(1, keepdims=True)
    nbr = np.stack([rng.choice(np.delete(np.arange(V), v), N, replace=False) for v in range(V)])
    return w, cand, nbr, J


def test_neighbor_lookups_match_dense_bone_space(graph):
    w, cand, nbr, J = graph
    W = dense(w, cand, J)
    tw, tc, tn = torch.from_numpy(w), torch.from_numpy(cand), torch.from_numpy(nbr)
    at = neighbor_candidate_weights(tw, tc, tn).numpy()
    for v in range(len(w)):
        for n in range(nbr.shape[1]):
            assert np.allclose(at[v, n], W[nbr[v, n], cand[v]], atol=1e-6)
    mask = torch.ones_like(tw, dtype=torch.bool)
    l1 = neighbor_l1(tw, tc, tn, mask).numpy()
    ref = np.abs(W[:, None, :] - W[nbr]).sum(-1).mean(1)
    assert np.allclose(l1, ref, atol=1e-5)
    sm = smoothness_loss(tw, tc, tn, mask).item()
    assert sm == pytest.approx(((W[:, None, :] - W[nbr]) ** 2).sum(-1).mean(), rel=1e-5)


def test_smoothness_ignores_padded_duplicate_candidates():
    # vertex 0 has candidates (0, 1) and a padded duplicate of 0; vertex 1 has (1, 2, 0)
    w = t([[0.7, 0.3, 1e-6], [0.5, 0.25, 0.25]])
    cand = torch.tensor([[0, 1, 0], [1, 2, 0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    nbr = torch.tensor([[1], [0]])
    # dense: v0 = (0.7, 0.3, 0), v1 = (0.25, 0.5, 0.25): squared diff = 0.2025 + 0.04 + 0.0625
    assert smoothness_loss(w, cand, nbr, mask).item() == pytest.approx(0.305, rel=1e-5)


def test_locality_by_hand():
    w = t([[0.5, 0.5], [1.0, 0.0]])
    pair = torch.zeros(2, 2, 10)
    pair[..., 0] = t([[0.1, 0.3], [0.2, 0.4]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    # row 0: 0.5*0.01 + 0.5*0.09 = 0.05; row 1: 0.04 -> mean 0.045
    assert locality_loss(w, pair, mask).item() == pytest.approx(0.045)


def test_consistency_loss_value_and_target_has_no_gradient():
    clean = t([[0.5, 0.5]]).requires_grad_(True)
    noisy = t([[0.7, 0.3]]).requires_grad_(True)
    loss = consistency_loss(clean, noisy, torch.ones(1, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.04)
    loss.backward()
    assert clean.grad is None
    assert torch.allclose(noisy.grad, t([[0.2, -0.2]]))


def test_wgan_losses_by_hand():
    real, fake = t([1.0, 3.0]), t([0.0, -2.0])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-1.0 - 2.0)
    assert wgan_critic_loss(real, fake, drift=0.1).item() == pytest.approx(-3.0 + 0.1 * 5.0)
    assert wgan_generator_loss(fake).item() == pytest.approx(1.0)


def test_gradient_penalty_of_linear_critics_is_known():
    # two samples (graphs) of 3 and 2 rows; critic g scores sum(a_g . x_rows of g)
    graph = torch.tensor([0, 0, 0, 1, 1])
    a = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))

    def critic(x):
        return torch.zeros(2).index_add(0, graph, (x * a).sum(1))

    real, fake = torch.randn(5, 4), torch.randn(5, 4)
    norms = [a[:3].norm().item(), a[3:].norm().item()]
    expected = 10 * ((norms[0] - 1) ** 2 + (norms[1] - 1) ** 2) / 2
    gp = gradient_penalty(critic, real, fake, graph, 2, weight=10.0, generator=torch.Generator().manual_seed(1))
    assert gp.item() == pytest.approx(expected, rel=1e-5)
    # a unit-norm linear critic has no penalty
    unit = a / a.norm()
    gp0 = gradient_penalty(lambda x: (x * unit).sum()[None], real, fake, torch.zeros(5, dtype=torch.long), 1)
    assert gp0.item() == pytest.approx(0.0, abs=1e-8)


def test_gradient_penalty_is_differentiable_for_the_critic():
    w = torch.tensor([2.0, 0.0], requires_grad=True)
    gp = gradient_penalty(lambda x: x @ w, torch.ones(3, 2), torch.zeros(3, 2), torch.arange(3), 3)
    gp.backward()
    # d/dw 10 (|w| - 1)^2 = 20 (|w| - 1) w / |w| = (20, 0)
    assert torch.allclose(w.grad, torch.tensor([20.0, 0.0]), atol=1e-4)


def test_pooled_pairs_cycles_the_shorter_side():
    a, b = pooled_pairs(torch.arange(3.0)[:, None], torch.arange(5.0)[:, None] + 10)
    assert a[:, 0].tolist() == [0, 1, 2, 0, 1] and b[:, 0].tolist() == [10, 11, 12, 13, 14]


def test_total_loss_weights_and_skips():
    terms = {"sup": t(2.0), "adv_s": t(-4.0), "cons": t(1.0)}
    got = total_loss(terms, {"sup": 1.0, "adv_s": 0.1, "cons": 0.05, "const": 0.05})
    assert got.item() == pytest.approx(2.0 - 0.4 + 0.05)
    assert total_loss(terms, {"sup": 1.0}).item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        total_loss(terms, {"const": 1.0})


def test_cross_entropy_term_of_the_supervised_loss():
    """ce_lambda adds -sum t log p per valid row (hand value) and nothing when 0."""
    import math

    import torch

    from backend.training.losses import row_cross_entropy, supervised_loss

    pred = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    valid = torch.tensor([True, False])
    ce = row_cross_entropy(pred, target, valid)
    assert abs(float(ce) - (-math.log(0.5 + 1e-6))) < 1e-5  # the second row is not valid
    base, mse, cos = supervised_loss(pred, target, mask, valid, 0.1)
    with_ce, mse2, _ = supervised_loss(pred, target, mask, valid, 0.1, ce_lambda=2.0)
    assert abs(float(with_ce - base) - 2.0 * float(ce)) < 1e-5 and float(mse) == float(mse2)


def test_rig_balance_gives_every_rig_equal_weight():
    import torch

    from backend.training.losses import masked_mse, rig_balance_weights, supervised_loss

    torch.manual_seed(0)
    graph = torch.tensor([0, 1, 1, 1, 1])
    valid = torch.tensor([True, True, True, True, False])  # rig 1 has 3 valid rows
    rw = rig_balance_weights(graph, valid)
    assert torch.allclose(rw, torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3, 0.0]))
    pred = torch.softmax(torch.randn(5, 4), 1)
    target = torch.softmax(torch.randn(5, 4), 1)
    mask = torch.ones(5, 4, dtype=torch.bool)
    _, mse_bal, _ = supervised_loss(pred, target, mask, valid, row_weight=rw)
    per_rig = [masked_mse(pred[i], target[i], mask[i]) for i in ([0], [1, 2, 3])]
    assert torch.allclose(mse_bal, (per_rig[0] + per_rig[1]) / 2)
    _, mse_plain, _ = supervised_loss(pred, target, mask, valid)
    assert torch.allclose(mse_plain, masked_mse(pred[:4], target[:4], mask[:4]))
    assert not torch.allclose(mse_bal, mse_plain)
