"""Separate mesh pieces and the piece features (features/pieces.py) against hand-computed answers."""
import dataclasses

import numpy as np
import onnxruntime as ort
import torch

from backend.export.onnx_export import export_generator, load_checkpoint, torch_forward
from backend.features.cache import cache_key
from backend.features.pieces import FPIECE, mesh_pieces, piece_pair_features, vertex_areas
from backend.features.pipeline import FP, FeatureConfig, compute_features
from backend.models.checkpoint import checkpoint_dict
from backend.models.generator import Generator
from conftest import make_capsule_chain


def two_squares():
    """Piece 0: a unit square at z=0 (2 triangles, area 1); piece 1: a 2x2 square at z=5 (area 4);
    vertex 8 is used by no face."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                  [0, 0, 5], [2, 0, 5], [2, 2, 5], [0, 2, 5], [9, 9, 9]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.int64)
    return v, f


def test_pieces_and_vertex_areas():
    v, f = two_squares()
    count, labels = mesh_pieces(f, len(v))
    assert count == 3
    assert len(set(labels[:4])) == 1 and len(set(labels[4:8])) == 1 and labels[0] != labels[4] != labels[8]
    a = vertex_areas(v, f)
    np.testing.assert_allclose(a.sum(), 5.0)
    np.testing.assert_allclose(a[[0, 2]], 1.0 / 3.0)  # corners shared by both triangles of the unit square
    np.testing.assert_allclose(a[[1, 3]], 1.0 / 6.0)
    assert a[8] == 0.0


def test_piece_pair_features_known_answers():
    v, f = two_squares()
    heads = np.array([[0.5, 0.5, -0.01], [1.0, 1.0, 5.0]])  # bone 0 lies on the small square, bone 1 on the big one
    tails = np.array([[0.5, 0.5, 0.01], [1.0, 1.0, 9.0]])  # bone 1 leaves its piece's box after the head
    cand = np.array([[0, 1]] * 9, np.int64)
    prior = np.zeros((9, 2), np.float32)
    prior[:, 0] = np.linspace(0.1, 0.9, 9)
    prior[:, 1] = 1.0 - prior[:, 0]
    out = piece_pair_features(v, f, heads, tails, cand, prior)
    assert out.shape == (9, 2, FPIECE) and out.dtype == np.float32
    # area shares 1/5 and 4/5; the loose vertex has none (clipped at -2)
    np.testing.assert_allclose(out[0, :, 0], np.log10(0.2) / 3.0, rtol=1e-6)
    np.testing.assert_allclose(out[5, :, 0], np.log10(0.8) / 3.0, rtol=1e-6)
    np.testing.assert_allclose(out[8, :, 0], -2.0)
    # area-weighted piece means of the prior, the same for every vertex of the piece
    a = vertex_areas(v, f)
    m0 = (a[:4] * prior[:4, 0]).sum() / a[:4].sum()
    np.testing.assert_allclose(out[:4, 0, 1], m0, rtol=1e-6)
    np.testing.assert_allclose(out[:4, 1, 1], 1.0 - m0, rtol=1e-6)
    np.testing.assert_allclose(out[8, :, 1], prior[8], rtol=1e-6)  # a piece without area: its own row
    # bone 0 lies wholly in the small square's (grown) box, bone 1 with 1 of 5 samples in the big one's
    np.testing.assert_allclose(out[:4, :, 2], [[1.0, 0.0]] * 4)
    np.testing.assert_allclose(out[4:8, :, 2], [[0.0, 0.2]] * 4)


def test_piece_features_extend_the_base_features():
    rig = make_capsule_chain(n_bones=3, segments=8, rings=10)
    base = compute_features(rig, FeatureConfig(k_bones=3, distance="euclidean"))
    more = compute_features(rig, FeatureConfig(k_bones=3, distance="euclidean", piece_features=True))
    assert FeatureConfig(piece_features=True).pair_dim == FP + FPIECE == more.pair_feat.shape[2]
    np.testing.assert_array_equal(more.pair_feat[..., :FP], base.pair_feat)
    np.testing.assert_allclose(more.pair_feat[..., FP], 0.0, atol=1e-6)  # one piece: the whole mesh
    # one piece: the piece mean of the prior is the same for every vertex
    assert np.ptp(more.to_dense(more.pair_feat[..., FP + 1]), axis=0).max() < 1e-5


def test_feature_keys_made_before_piece_features_stay_valid():
    # the feature config as it was before the later options (piece_features, parent_candidate,
    # geodesic_pair): same class name, the fields without them
    old_fields = [(f.name, f.type, dataclasses.field(default=f.default))
                  for f in dataclasses.fields(FeatureConfig) if not f.metadata.get("key_omits_default")]
    assert len(old_fields) == len(dataclasses.fields(FeatureConfig)) - 3
    Old = dataclasses.make_dataclass("FeatureConfig", old_fields, frozen=True)
    assert cache_key({"f": FeatureConfig(k_bones=5)}) == cache_key({"f": Old(k_bones=5)})
    assert cache_key({"f": FeatureConfig(k_bones=5, piece_features=True)}) != cache_key({"f": Old(k_bones=5)})
    assert cache_key({"f": FeatureConfig(k_bones=5, parent_candidate=True)}) != cache_key({"f": Old(k_bones=5)})
    assert cache_key({"f": FeatureConfig(k_bones=5, geodesic_pair=True)}) != cache_key({"f": Old(k_bones=5)})
    assert FeatureConfig().key() == ",".join(f"{k}={v}" for k, v in sorted(dataclasses.asdict(Old()).items()))


def test_piece_feature_model_round_trips_through_checkpoint_and_onnx(tmp_path):
    fcfg = FeatureConfig(k_bones=4, distance="euclidean", piece_features=True)
    torch.manual_seed(3)
    model = Generator(hidden=16, fused=16, fp=fcfg.pair_dim).eval()
    torch.save(checkpoint_dict(model, fcfg, {"epochs": 1}), tmp_path / "g.pt")
    loaded, _ = load_checkpoint(tmp_path / "g.pt")
    res = export_generator(loaded, tmp_path / "g.onnx", fcfg)
    assert res.max_abs_diff <= 1e-5
    inputs = compute_features(make_capsule_chain(3, segments=8), fcfg).model_inputs()
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["weights"], inputs)[0]
    np.testing.assert_allclose(got, torch_forward(model, inputs), atol=1e-5, rtol=0)


def test_piece_rows_lists_each_pieces_vertices_in_order():
    from backend.features.pieces import piece_rows

    rows = piece_rows(np.array([2, 0, 2, 0, 2]), 4)
    assert [r.tolist() for r in rows] == [[1, 3], [], [0, 2, 4], []]
