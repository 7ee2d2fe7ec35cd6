"""ONNX export: parity with torch on unseen sizes (multi-threaded), no scatter ops, metadata,
single file, int8 quantisation, the export command."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from backend.__main__ import main
from backend.export.metadata import get_metadata, weights_hash
from backend.export.onnx_export import (
    TRACE_SIZES,
    example_inputs,
    export_generator,
    load_checkpoint,
    op_types,
    torch_forward,
)
from backend.export.quantize import quantize_with_report
from backend.features.pipeline import FEATURE_VERSION, FeatureConfig, compute_features, feature_code_hash
from backend.inference import model_meta as mm
from backend.models.checkpoint import checkpoint_dict
from backend.models.generator import Generator
from conftest import make_capsule_chain

FCFG = FeatureConfig(k_bones=4, distance="euclidean")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = Generator(hidden=32, fused=32).eval()
    # make the prior gain non-trivial so the parity covers that path
    with torch.no_grad():
        model.prior_gain.fill_(0.7)
    path = tmp_path_factory.mktemp("export") / "g.onnx"
    res = export_generator(model, path, FCFG, train_summary={"epochs": 3, "rigs": 12}, model_version="test-1")
    return model, path, res


def ort_session(path, threads=4):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def test_parity_on_unseen_sizes_with_threads(exported):
    model, path, res = exported
    assert res.max_abs_diff <= 1e-5
    sess = ort_session(path, threads=4)
    for i, sizes in enumerate([(1000, 12, 31, 8), (40, 5, 3, 3), (7, 2, 1, 1)]):
        assert sizes != TRACE_SIZES
        inputs = example_inputs(*sizes, seed=10 + i)
        got = sess.run(["weights"], inputs)[0]
        ref = torch_forward(model, inputs)
        assert got.shape == (sizes[0], sizes[3])
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_parity_on_real_rig_features(exported):
    model, path, _ = exported
    sess = ort_session(path, threads=4)
    for n_bones, segments in ((2, 8), (7, 12)):
        rig = make_capsule_chain(n_bones, segments=segments)
        inputs = compute_features(rig, FCFG).model_inputs()
        got = sess.run(["weights"], inputs)[0]
        np.testing.assert_allclose(got, torch_forward(model, inputs), atol=1e-5, rtol=0)


def test_graph_has_no_scatter_and_is_one_file(exported, tmp_path):
    _, path, res = exported
    proto = onnx.load(str(path))
    ops = set(op_types(proto))
    assert "ScatterND" not in ops and "ScatterElements" not in ops
    assert "Gather" in ops  # the neighbour / candidate gathers are there
    assert proto.opset_import[0].version == 18
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]
    # inputs: every non-feature axis dynamic
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert all(isinstance(d, str) for d in dims["pair_feat"][:2]) and dims["pair_feat"][2] == 10
    assert all(isinstance(d, str) for d in dims["neighbors"])


def test_metadata_written(exported):
    model, path, res = exported
    meta = get_metadata(onnx.load(str(path)))
    assert meta[mm.KEY_FORMAT] == mm.MODEL_FORMAT
    assert meta[mm.KEY_FEATURE_VERSION] == FEATURE_VERSION
    assert meta[mm.KEY_FEATURE_HASH] == feature_code_hash()
    assert json.loads(meta[mm.KEY_FEATURE_CONFIG]) == {"k_bones": 4, "n_neighbors": 12,
                                                         "geodesic_resolution": 64, "distance": "euclidean",
                                                         "prior": "geodesic"}
    assert json.loads(meta[mm.KEY_TRAIN_SUMMARY]) == {"epochs": 3, "rigs": 12}
    assert json.loads(meta[mm.KEY_MODEL_CONFIG])["hidden"] == 32
    assert meta[mm.KEY_MODEL_VERSION] == "test-1"
    assert meta[mm.KEY_WEIGHTS_HASH] == weights_hash(model.state_dict())
    assert meta[mm.KEY_DATE][:2] == "20"
    info = mm.parse_model_info(ort_session(path, 1).get_modelmeta().custom_metadata_map, path)
    assert info.feature_config == FCFG


def test_weights_hash_changes_with_weights():
    torch.manual_seed(0)
    a = Generator(hidden=8, fused=8)
    h = weights_hash(a.state_dict())
    assert h == weights_hash(a.state_dict())
    with torch.no_grad():
        a.prior_gain.add_(1e-3)
    assert weights_hash(a.state_dict()) != h


def test_int8_quantisation(exported, tmp_path):
    _, path, _ = exported
    inputs = example_inputs(300, 12, 9, 4, seed=5)
    rep = quantize_with_report(path, tmp_path / "g.int8.onnx", inputs, "random")
    assert rep.int8_bytes < rep.fp32_bytes
    assert 0 < rep.max_abs_diff < 0.1 and rep.mean_abs_diff <= rep.max_abs_diff
    sess = ort_session(tmp_path / "g.int8.onnx", 2)
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta[mm.KEY_QUANTIZATION] == "int8" and meta[mm.KEY_FEATURE_HASH] == feature_code_hash()
    out = sess.run(["weights"], inputs)[0]
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-4)


def test_export_command_from_checkpoint(tmp_path, capsys):
    torch.manual_seed(1)
    model = Generator(hidden=16, fused=16)
    ckpt = tmp_path / "g.pt"
    torch.save(checkpoint_dict(model, FCFG, {"epochs": 1}), ckpt)
    loaded, d = load_checkpoint(ckpt)
    assert weights_hash(loaded.state_dict()) == weights_hash(model.state_dict())
    out = tmp_path / "out" / "m.onnx"
    assert main(["export", str(ckpt), str(out), "--quantize", "int8"]) == 0
    text = capsys.readouterr().out
    assert "max |torch - onnxruntime|" in text
    report = json.loads(text[text.rindex("\n{") + 1:])
    assert report["int8_bytes"] < report["fp32_bytes"]
    assert out.is_file() and (tmp_path / "out" / "m.int8.onnx").is_file()
    meta = get_metadata(onnx.load(str(out)))
    assert json.loads(meta[mm.KEY_TRAIN_SUMMARY]) == {"epochs": 1}
    assert json.loads(meta[mm.KEY_FEATURE_CONFIG])["k_bones"] == 4


def test_relative_inputs_model_round_trips_through_checkpoint_and_onnx(tmp_path):
    torch.manual_seed(2)
    model = Generator(hidden=16, fused=16, relative_inputs=True).eval()
    ckpt = tmp_path / "g.pt"
    torch.save(checkpoint_dict(model, FCFG, {"epochs": 1}), ckpt)
    loaded, _ = load_checkpoint(ckpt)
    assert loaded.relative_inputs
    res = export_generator(loaded, tmp_path / "g.onnx", FCFG)
    assert res.max_abs_diff <= 1e-5
    inputs = compute_features(make_capsule_chain(3, segments=8), FCFG).model_inputs()
    shifted = dict(inputs, vertex_feat=inputs["vertex_feat"] + np.float32(0.25) * (np.arange(10) < 3))
    sess = ort_session(tmp_path / "g.onnx")
    a, b = sess.run(["weights"], inputs)[0], sess.run(["weights"], shifted)[0]
    np.testing.assert_allclose(a, torch_forward(model, inputs), atol=1e-5, rtol=0)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_export_command_refuses_other_feature_version(tmp_path, capsys):
    model = Generator(hidden=8, fused=8)
    d = checkpoint_dict(model, FCFG)
    d["feature_version"] = "autoskin-features-0"
    torch.save(d, tmp_path / "old.pt")
    assert main(["export", str(tmp_path / "old.pt"), str(tmp_path / "m.onnx")]) == 2
    assert "autoskin-features-0" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    assert main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "m.onnx")]) == 2


def test_grown_generator_exports_with_parity_and_padding(tmp_path):
    """Candidate attention and gated context layers export without scatter ops and match torch
    (4 threads), also on rows whose padded candidates (prior 0) must stay out of the attention."""
    torch.manual_seed(3)
    model = Generator(hidden=16, fused=16, context_layers=2, pair_attention=2).eval()
    with torch.no_grad():  # open the identity-start layers, as training would
        for layer in model.context:
            layer.gate.fill_(0.5)
        model.attention.out.weight.normal_(0.0, 0.3)
    res = export_generator(model, tmp_path / "g.onnx", FCFG)
    assert res.max_abs_diff <= 1e-5
    assert not any("Scatter" in op for op in op_types(onnx.load(str(tmp_path / "g.onnx"))))
    sess = ort_session(tmp_path / "g.onnx", threads=4)
    inputs = example_inputs(300, 6, 9, 5, seed=4)
    inputs["prior"][::3, -2:] = 0.0  # padded candidates on every third vertex
    got = sess.run(["weights"], inputs)[0]
    np.testing.assert_allclose(got, torch_forward(model, inputs), atol=1e-5, rtol=0)
    assert (got[::3, -2:] == 0.0).all()
    pads = dict(inputs, pair_feat=inputs["pair_feat"].copy())
    pads["pair_feat"][::3, -2:] += 4.0
    np.testing.assert_allclose(sess.run(["weights"], pads)[0], got, atol=1e-5, rtol=0)
