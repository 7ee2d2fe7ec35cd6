"""backend.inference.rigid_pieces: small separate pieces put on one bone when the weights and the
geometry agree; the Predictor option and the CLI flag that turn it on."""
from __future__ import annotations

import numpy as np
import pytest

from backend.inference.rigid_pieces import rigid_pieces
from conftest import export_tiny_model, make_capsule_chain, make_chain_with_eye as chain_with_eye


def blended(V: int, J: int, rows: dict) -> np.ndarray:
    w = np.full((V, J), 1.0 / J, np.float32)
    for i, r in rows.items():
        w[i] = r
    return w


def test_small_piece_goes_to_its_bone_and_the_body_is_untouched():
    rig, eye = chain_with_eye()
    V = rig.num_vertices
    w = blended(V, 3, {i: [0.1, 0.3, 0.6] for i in np.flatnonzero(eye)})
    out, bones = rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, np.ones(3, bool))
    assert bones == [2]
    np.testing.assert_array_equal(out[eye], np.tile([0.0, 0.0, 1.0], (eye.sum(), 1)))
    np.testing.assert_array_equal(out[~eye], w[~eye])  # the body (one big piece) is left as it was
    assert out.dtype == np.float32


def test_piece_whose_vertices_disagree_stays_blended():
    """Half of the eye's vertices lean to bone 1, half to bone 2: agreement 0.5 < 0.8."""
    rig, eye = chain_with_eye()
    idx = np.flatnonzero(eye)
    rows = {i: ([0.0, 0.45, 0.55] if k < 4 else [0.0, 0.55, 0.45]) for k, i in enumerate(idx)}
    rows[idx[0]] = [0.0, 0.2, 0.8]  # the mean still points at bone 2
    w = blended(rig.num_vertices, 3, rows)
    out, bones = rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, np.ones(3, bool))
    assert bones == []
    np.testing.assert_array_equal(out, w)
    # with a lower agreement threshold the same piece becomes rigid
    out, bones = rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, np.ones(3, bool), min_agreement=0.5)
    assert bones == [2] and np.all(out[eye, 2] == 1.0)


def test_piece_far_from_the_predicted_bone_stays_blended():
    """The weights say bone 0 but the eye sits by bone 2 (z = 2.5): the geometry disagrees."""
    rig, eye = chain_with_eye()
    w = blended(rig.num_vertices, 3, {i: [0.9, 0.05, 0.05] for i in np.flatnonzero(eye)})
    out, bones = rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, np.ones(3, bool))
    assert bones == [] and np.array_equal(out, w)


def test_large_single_and_disallowed_pieces_stay_blended():
    rig, eye = chain_with_eye()
    w = blended(rig.num_vertices, 3, {i: [0.1, 0.3, 0.6] for i in np.flatnonzero(eye)})
    allowed = np.ones(3, bool)
    # the eye holds more than 0.01 % of the surface: with that as the limit nothing is small
    assert rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, allowed, max_share=1e-4)[1] == []
    # bone 2 may not carry weight (a helper bone): the eye is left alone
    assert rigid_pieces(w, rig.vertices, rig.faces, rig.joints, rig.tails, np.array([1, 1, 0], bool))[1] == []
    body = make_capsule_chain(3, with_weights=False)  # one piece only
    wb = blended(body.num_vertices, 3, {0: [0.1, 0.3, 0.6]})
    out, bones = rigid_pieces(wb, body.vertices, body.faces, body.joints, body.tails, allowed)
    assert bones == [] and np.array_equal(out, wb)


def test_predictor_and_cli_option(tmp_path):
    """Predictor(rigid_pieces=True) = the default prediction passed through rigid_pieces; the eye, mostly
    on bone 2 in the heat prior, ends on bone 2 alone; ``skin --rigid-pieces`` writes the same."""
    pytest.importorskip("torch")
    from backend.__main__ import main
    from backend.inference.predictor import Predictor
    from backend.io.npz import load_npz, save_npz

    model = export_tiny_model(tmp_path / "tiny.onnx", k_bones=3)
    rig, eye = chain_with_eye(eye_z=2.1)  # just above the joint of bones 1 and 2: the prior blends them
    plain = Predictor(model, prior_blend=0.0, device="cpu").predict(rig)
    rigid = Predictor(model, prior_blend=0.0, device="cpu", rigid_pieces=True).predict(rig)
    expected, bones = rigid_pieces(plain.weights, rig.vertices, rig.faces, rig.joints, rig.tails, rig.is_deform)
    assert bones == [2] and rigid.info["rigid_pieces"] == 1 and "rigid_pieces" not in plain.info
    np.testing.assert_array_equal(rigid.weights, expected)
    assert np.all(rigid.weights[eye, 2] == 1.0) and plain.weights[eye, 2].min() < 1.0
    src = tmp_path / "rig.npz"
    save_npz(rig, src)
    for flag in ([], ["--rigid-pieces"]):
        dst = tmp_path / f"out{len(flag)}.npz"
        assert main(["skin", str(src), str(dst), "--model", str(model), "--prior-blend", "0", *flag]) == 0
        np.testing.assert_allclose(load_npz(dst).weights, (expected if flag else plain.weights), atol=1e-6)
