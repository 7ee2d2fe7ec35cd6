"""The deformation loss: candidate displacements reproduce the evaluation's posed vertices, the loss
equals the evaluation's deformation error on the same poses, and a short training run uses it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.evaluation.deformation import (bbox_diagonal, deformation_error, global_transforms,
                                            linear_blend_skinning, random_local_rotations)
from backend.features.pipeline import FeatureConfig, compute_features
from backend.io.npz import save_npz
from backend.rig import RigError
from backend.training.data import FeatureStore, RigSet, collate_samples
from backend.training.losses import deformation_loss
from backend.training.poses import candidate_displacements
from backend.training.trainer import Trainer
from conftest import make_capsule_chain
from test_training import tiny_config


def _rig_and_features():
    rig = make_capsule_chain(n_bones=3, length=3.0, radius=0.3, segments=8, rings=9)
    feats = compute_features(rig, FeatureConfig(distance="euclidean", k_bones=3))
    return rig, feats


def test_displacements_give_the_posed_vertices_of_linear_blend_skinning():
    rig, f = _rig_and_features()
    diag = bbox_diagonal(rig.vertices)
    disp = candidate_displacements(rig.vertices, rig.joints, rig.parents, f.deform_index, f.cand, diag, 3, seed=5)
    rng = np.random.default_rng(0)
    w = rng.random(f.cand.shape).astype(np.float32)
    w /= w.sum(1, keepdims=True)
    rots = random_local_rotations(rig.num_bones, 3, seed=5)
    for p in range(3):
        A, b = global_transforms(rig.joints, rig.parents, rots[p])
        posed = linear_blend_skinning(rig.vertices, f.to_dense(w), A, b)
        mine = rig.vertices + diag * np.einsum("vk,vkc->vc", w, disp[p])
        np.testing.assert_allclose(mine, posed, atol=1e-4 * diag)


def test_loss_equals_the_evaluation_deformation_error_on_the_same_poses():
    rig, f = _rig_and_features()
    t = f.gather_dense(rig.weights)  # the chain's true weights all lie on the 3 candidates
    assert np.allclose(t.sum(1), 1.0, atol=1e-5)
    pred = np.roll(t, 1, axis=1) * 0.5 + t * 0.5  # half of every vertex on a wrong bone
    disp = candidate_displacements(rig.vertices, rig.joints, rig.parents, f.deform_index, f.cand,
                                   bbox_diagonal(rig.vertices), 4, seed=9)
    ones = torch.ones(f.cand.shape, dtype=torch.bool)
    loss = deformation_loss(torch.from_numpy(pred), torch.from_numpy(t), torch.from_numpy(disp), ones,
                            torch.ones(len(t), dtype=torch.bool), eps=0.0)
    ref = deformation_error(rig, f.to_dense(pred), local_rot=random_local_rotations(rig.num_bones, 4, seed=9))
    assert ref["deform_mean"] > 0.5
    assert loss.item() == pytest.approx(ref["deform_mean"], rel=1e-4)
    rots = random_local_rotations(rig.num_bones, 4, seed=9)
    sq = []
    for rot in rots:  # power 2: the mean squared distance, from posed vertices
        A, b = global_transforms(rig.joints, rig.parents, rot)
        gap = (linear_blend_skinning(rig.vertices, f.to_dense(pred), A, b)
               - linear_blend_skinning(rig.vertices, rig.weights, A, b))
        sq.append(((100.0 * np.linalg.norm(gap, axis=1) / bbox_diagonal(rig.vertices)) ** 2).mean())
    loss2 = deformation_loss(torch.from_numpy(pred), torch.from_numpy(t), torch.from_numpy(disp), ones,
                             torch.ones(len(t), dtype=torch.bool), power=2.0)
    assert loss2.item() == pytest.approx(float(np.mean(sq)), rel=1e-4)
    same = deformation_loss(torch.from_numpy(t), torch.from_numpy(t), torch.from_numpy(disp), ones,
                            torch.ones(len(t), dtype=torch.bool))
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_loss_gradient_is_finite_at_zero_error_and_respects_row_weights():
    rig, f = _rig_and_features()
    t = torch.from_numpy(f.gather_dense(rig.weights))
    disp = torch.from_numpy(candidate_displacements(rig.vertices, rig.joints, rig.parents, f.deform_index, f.cand,
                                                    bbox_diagonal(rig.vertices), 2, seed=1))
    w = t.clone().requires_grad_(True)
    mask = torch.ones(t.shape, dtype=torch.bool)
    valid = torch.ones(len(t), dtype=torch.bool)
    deformation_loss(w, t, disp, mask, valid).backward()
    assert torch.isfinite(w.grad).all()
    wrong = torch.roll(t, 1, dims=1)
    only_first = torch.zeros(len(t))
    only_first[0] = 1.0
    a = deformation_loss(wrong, t, disp, mask, valid, row_weight=only_first)
    b = deformation_loss(wrong[:1], t[:1], disp[:, :1], mask[:1], valid[:1])
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_rig_set_poses_labelled_samples_only_and_collates_them(tmp_path):
    rig = make_capsule_chain(n_bones=3, length=3.0, radius=0.3, segments=8, rings=9)
    path = tmp_path / "a.npz"
    save_npz(rig, path)
    store = FeatureStore(tmp_path / "cache", FeatureConfig(distance="euclidean", k_bones=3))
    rs = RigSet([path, path], [True, False], store, max_vertices=40, deform_poses=2)
    lab, unl = rs.get(0, seed=0, epoch=0), rs.get(1, seed=0, epoch=0)
    assert lab.displacement.shape == (2, 40, 3, 3) and unl.displacement is None
    assert np.array_equal(lab.displacement, rs.get(0, seed=0, epoch=0).displacement)  # seeded by (seed, epoch, rig)
    assert not np.array_equal(lab.displacement, rs.get(0, seed=0, epoch=1).displacement)
    b = collate_samples([lab, unl])
    assert tuple(b["displacement"].shape) == (2, 80, 3, 3) and not b["displacement"][:, 40:].any()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # features + geometry


def test_training_with_the_deformation_loss_logs_it_and_scores_val_with_it(tmp_path):
    root = tmp_path / "rigs"
    for split, n in (("train", 3), ("val", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            save_npz(make_capsule_chain(n_bones=2 + i, length=2.0 + 0.3 * i, radius=0.3, segments=8, rings=8,
                                        name=f"{split}{i}"), root / split / f"{i}.npz")
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, loss=dict(deform=0.1, deform_poses=2), stages=dict(score_deform=1.0))
    tr = Trainer(cfg, root, tmp_path / "run", progress=False, tensorboard=False)
    summary = tr.fit()
    assert not summary["killed"]
    steps = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["deform"] > 0 for r in steps if r["kind"] == "step")
    epoch = [r for r in steps if r["kind"] == "epoch"][-1]
    assert epoch["val_score"] == pytest.approx(epoch["val_mse"] + 0.1 * epoch["val_smooth"] + epoch["val_deform"],
                                               rel=1e-6)
    with pytest.raises(RigError, match="deform_power"):
        Trainer(tiny_config(tmp_path, loss=dict(deform=1.0, deform_power=0.0)), root, tmp_path / "r3",
                progress=False, tensorboard=False)
    with pytest.raises(RigError, match="score_deform"):
        Trainer(tiny_config(tmp_path, stages=dict(score_deform=1.0)), root, tmp_path / "r2", progress=False,
                tensorboard=False)


def test_blended_view_poses_the_runtime_mix_with_each_rigs_blend(tmp_path):
    from backend.inference.blend_rule import PieceBlendRule
    from backend.training.losses import blend_with_prior

    rig = make_capsule_chain(n_bones=3, length=3.0, radius=0.3, segments=8, rings=9)
    path = tmp_path / "a.npz"
    save_npz(rig, path)
    store = FeatureStore(tmp_path / "cache", FeatureConfig(distance="euclidean", k_bones=3))
    rule = PieceBlendRule(low=0.25, high=1.0, saturation=0.1)  # one closed body: b = 0.25
    rs = RigSet([path, path], [True, False], store, max_vertices=40, deform_poses=2, blend_rule=rule)
    lab, unl = rs.get(0, seed=0, epoch=0), rs.get(1, seed=0, epoch=0)
    assert lab.blend == pytest.approx(0.25) and unl.blend == 1.0
    t = collate_samples([lab, unl]).tensors
    assert t["blend"].shape == (80,) and torch.allclose(t["blend"][:40], torch.tensor(0.25))
    w = torch.rand(80, 3)
    w = w / w.sum(1, keepdim=True)
    mixed = blend_with_prior(w, t)
    assert torch.allclose(mixed[:40], 0.25 * w[:40] + 0.75 * t["prior"][:40])
    assert torch.allclose(mixed[40:], w[40:])  # unposed rows keep b = 1
    assert torch.allclose(mixed.sum(1)[:40], torch.ones(40), atol=1e-5)
    assert blend_with_prior(w, {"prior": t["prior"]}) is w  # no blends in the batch: G alone
    # the loss of the mix at b = 0 is the prior's own, whatever G says (no gradient reaches G)
    t0 = dict(t, blend=torch.zeros(80))
    g = w.clone().requires_grad_(True)
    loss = deformation_loss(blend_with_prior(g, t0), t0["target"], t0["displacement"], t0["pair_mask"],
                            t0["row_valid"])
    loss.backward()
    assert float(g.grad.abs().max()) == 0.0


def test_training_refuses_a_bad_blend_rule(tmp_path):
    root = tmp_path / "rigs"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        save_npz(make_capsule_chain(n_bones=2, name=split), root / split / "0.npz")
    with pytest.raises(RigError, match="needs loss.deform"):
        Trainer(tiny_config(tmp_path, loss=dict(deform_blend_rule=str(tmp_path / "r.json"))), root, tmp_path / "r1",
                progress=False, tensorboard=False)
    with pytest.raises(RigError, match="r.json"):
        Trainer(tiny_config(tmp_path, loss=dict(deform=1.0, deform_blend_rule=str(tmp_path / "r.json"))), root,
                tmp_path / "r2", progress=False, tensorboard=False)


def test_memo_rig_set_poses_each_sample_once(tmp_path, monkeypatch):
    """Validation's RigSet keeps its samples: the same (rig, seed, epoch) is posed once, not per epoch."""
    import backend.training.data as data_mod

    rig = make_capsule_chain(n_bones=3, length=3.0, radius=0.3, segments=8, rings=9)
    path = tmp_path / "a.npz"
    save_npz(rig, path)
    calls = []
    real = data_mod.candidate_displacements
    monkeypatch.setattr(data_mod, "candidate_displacements", lambda *a, **k: calls.append(1) or real(*a, **k))
    store = FeatureStore(tmp_path / "cache", FeatureConfig(distance="euclidean", k_bones=3))
    memo = RigSet([path], [True], store, max_vertices=10**9, deform_poses=2, memo=True)
    first = memo.get(0, seed=0, epoch=0)
    assert memo.get(0, seed=0, epoch=0) is first and len(calls) == 1
    plain = RigSet([path], [True], store, max_vertices=10**9, deform_poses=2)
    again = plain.get(0, seed=0, epoch=0)
    assert len(calls) == 2 and np.array_equal(again.displacement, first.displacement)
