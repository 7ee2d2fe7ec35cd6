"""Metrics, deformation error and baselines on constructed cases with hand-computed answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from backend.evaluation import metrics as M
from backend.evaluation.baselines import envelope_weights, nearest_bone_weights
from backend.evaluation.deformation import (axis_angle_matrix, deformation_error, face_artefacts,
                                            global_transforms, linear_blend_skinning, random_local_rotations)
from backend.rig import make_rig

# 4 vertices on a 2-bone chain; the "one bone off" prediction moves all weight to the neighbouring bone
TRUTH = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
OFF = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
PATH_EDGES = np.array([[0, 1], [1, 2], [2, 3]])


def test_truth_against_itself_is_perfect(small_rig):
    rig = small_rig(3)
    m = M.weight_metrics(rig, rig.weights)
    assert m["l1"] == 0.0 and m["mse"] == 0.0
    assert m["cosine"] == pytest.approx(1.0)
    assert m["dominant_acc"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["dist_kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["smooth_pred"] == m["smooth_true"] > 0
    assert m["unweighted"] == 0 and m["vertices"] == rig.num_vertices
    d = deformation_error(rig, rig.weights, num_poses=3, seed=1)
    assert d == {"deform_mean": 0.0, "deform_max": 0.0, "artefact_frac": 0.0}


def test_one_bone_off_hand_computed():
    assert M.l1_per_vertex(TRUTH, OFF) == pytest.approx((2 + 1.5 + 1.5 + 2) / 4)
    assert M.mse(TRUTH, OFF) == pytest.approx((2 + 1.125 + 1.125 + 2) / 8)
    # rows 1, 2: <(.75,.25),(0,1)> / |(.75,.25)| = .25 / sqrt(.625); rows 0, 3 are orthogonal
    assert M.cosine_similarity(TRUTH, OFF) == pytest.approx(2 * (0.25 / math.sqrt(0.625)) / 4)
    assert M.dominant_accuracy(TRUTH, OFF) == 0.0
    prec, rec = M.influence_precision_recall(TRUTH, OFF)
    assert prec == pytest.approx(2 / 4) and rec == pytest.approx(2 / 6)  # 2 shared of 4 predicted, 6 true
    assert M.smoothness(TRUTH, PATH_EDGES) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert M.smoothness(OFF, PATH_EDGES) == pytest.approx((0 + 2 + 0) / 3)
    # histograms: truth nonzero weights {1, .75, .25} twice each -> bins 19, 15, 5; prediction: all in bin 19
    eps, n = M.HIST_EPS, 20
    pt = np.full(n, eps)
    pt[[5, 15, 19]] += 1 / 3
    pt /= pt.sum()
    pp = np.full(n, eps)
    pp[19] += 1.0
    pp /= pp.sum()
    assert M.distribution_error(TRUTH, OFF) == pytest.approx(float(np.sum(pt * np.log(pt / pp))))
    assert M.distribution_error(TRUTH, OFF) > 5.0


def test_unweighted_rows_are_counted_and_penalised():
    pred = TRUTH.copy()
    pred[1] = 0.0
    assert M.unweighted_count(pred) == 1
    assert M.cosine_similarity(TRUTH, pred) == pytest.approx(3 / 4)
    assert M.dominant_accuracy(TRUTH, pred) == pytest.approx(3 / 4)
    assert M.l1_per_vertex(TRUTH, pred) == pytest.approx(1 / 4)


def test_restrict_drops_non_deform_bones_and_unweighted_truth_rows():
    truth = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pred = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t, p, mask = M.restrict(truth, pred, np.array([True, True, False]))
    assert mask.tolist() == [True, False, True]
    np.testing.assert_allclose(p, [[0.2, 0.3], [0.0, 1.0]])
    assert M.l1_per_vertex(t, p) == pytest.approx((0.3 + 0.2) / 2)  # weight on the control bone is lost


def _two_bone_strip(weights):
    """4 vertices in the XZ plane, 2 faces; bone 0 z 0..1, bone 1 z 1..2."""
    v = [[0.2, 0, 0.5], [-0.2, 0, 0.5], [0.2, 0, 1.5], [-0.2, 0, 1.5]]
    return make_rig(v, [[0, 1, 2], [1, 3, 2]], [[0, 0, 0], [0, 0, 1]], [-1, 0],
                    tails=[[0, 0, 1], [0, 0, 2]], weights=weights, name="strip")


def test_rotating_one_bone_moves_vertices_by_hand_computed_amount():
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    pred = truth.copy()
    pred[2] = [1, 0]  # vertex 2 stays on bone 0
    rig = _two_bone_strip(truth)
    rot = np.stack([np.eye(3), axis_angle_matrix(np.array([1.0, 0, 0]), np.pi / 2)])[None]
    A, b = global_transforms(rig.joints, rig.parents, rot[0])
    posed = linear_blend_skinning(rig.vertices, truth, A, b)
    # about the head (0,0,1): offset (0.2,0,0.5) -> (0.2,-0.5,0)
    np.testing.assert_allclose(posed[2], [0.2, -0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(posed[:2], rig.vertices[:2], atol=1e-6)
    d = deformation_error(rig, pred, local_rot=rot)
    diag = math.sqrt(0.4 ** 2 + 1.0 ** 2)
    assert d["deform_max"] == pytest.approx(100 * math.sqrt(0.5) / diag, rel=1e-6)
    assert d["deform_mean"] == pytest.approx(100 * math.sqrt(0.5) / 4 / diag, rel=1e-6)


def test_rotations_compose_down_the_hierarchy():
    joints = np.array([[0, 0, 0], [0, 0, 1.0]])
    rx = axis_angle_matrix(np.array([1.0, 0, 0]), np.pi / 2)
    A, b = global_transforms(joints, np.array([-1, 0]), np.stack([rx, rx]))
    x = np.array([0.2, 0.0, 1.5])
    # head (0,0,1) goes to (0,-1,0); offset (0.2,0,0.5) turns 180 degrees about x -> (0.2,0,-0.5)
    np.testing.assert_allclose(A[1] @ x + b[1], [0.2, -1.0, -0.5], atol=1e-9)
    # zero rows stay at rest, weight rows are normalised
    out = linear_blend_skinning(np.array([x, x]), np.array([[0.0, 0.0], [0.0, 2.0]]), A, b)
    np.testing.assert_allclose(out, [x, [0.2, -1.0, -0.5]], atol=1e-9)


def test_random_rotations_are_seeded_and_bounded():
    r1 = random_local_rotations(5, 4, 30.0, seed=3)
    assert np.array_equal(r1, random_local_rotations(5, 4, 30.0, seed=3))
    ang = np.arccos(np.clip((np.trace(r1, axis1=2, axis2=3) - 1) / 2, -1, 1))
    assert ang.max() <= np.deg2rad(30.0) + 1e-9 and ang.max() > np.deg2rad(10.0)
    np.testing.assert_allclose(r1 @ np.swapaxes(r1, -1, -2), np.broadcast_to(np.eye(3), r1.shape), atol=1e-9)


def test_face_artefacts_flags_flips_and_area_changes():
    rest = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]])
    faces = np.array([[0, 1, 2]])
    flipped = rest * np.array([1, -1, 1])  # mirrored: normal now -z
    assert face_artefacts(rest, rest, flipped, faces).tolist() == [True]
    assert face_artefacts(rest, rest, rest * 1.3, faces).tolist() == [False]  # area x1.69 < 2
    assert face_artefacts(rest, rest, rest * 1.5, faces).tolist() == [True]   # area x2.25
    assert face_artefacts(rest, rest * 1.5, rest * 1.5, faces).tolist() == [False]  # truth stretches as much


def test_baselines_on_a_chain(small_rig):
    rig = small_rig(3)
    near = nearest_bone_weights(rig)
    assert near.shape == (rig.num_vertices, 3) and np.all(near.sum(axis=1) == 1)
    z = rig.vertices[:, 2]
    np.testing.assert_array_equal(np.argmax(near, axis=1)[(z > 0.1) & (z < 0.9)], 0)
    np.testing.assert_array_equal(np.argmax(near, axis=1)[(z > 2.1)], 2)
    env = envelope_weights(rig)
    np.testing.assert_allclose(env.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(env, axis=1), np.argmax(near, axis=1))
    # a non-deform bone gets no weight
    rig.is_deform[1] = False
    assert envelope_weights(rig)[:, 1].max() == 0.0 and nearest_bone_weights(rig)[:, 1].max() == 0.0


def test_random_prediction_scores_worse_than_envelope(small_rig):
    rig = small_rig(3)
    rnd = np.random.default_rng(0).dirichlet(np.ones(3), size=rig.num_vertices).astype(np.float32)
    env = envelope_weights(rig)
    m_rnd, m_env = M.weight_metrics(rig, rnd), M.weight_metrics(rig, env)
    assert m_rnd["l1"] > m_env["l1"] + 0.3
    assert m_rnd["cosine"] < m_env["cosine"] - 0.2
    assert m_rnd["dominant_acc"] < m_env["dominant_acc"]
    assert m_rnd["smooth_pred"] > 2 * m_env["smooth_pred"]
    d_rnd = deformation_error(rig, rnd, num_poses=4, seed=0)
    d_env = deformation_error(rig, env, num_poses=4, seed=0)
    assert d_rnd["deform_mean"] > 2 * d_env["deform_mean"]
    assert d_rnd["artefact_frac"] >= d_env["artefact_frac"]
