"""The runtime verifies a model's weights against the weights_sha256 of its metadata on load."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from backend.inference import session
from backend.inference.model_meta import KEY_GRAPH_WEIGHTS_HASH, KEY_MODEL_VERSION, KEY_WEIGHTS_HASH, ModelError
from backend.inference.onnx_weights import graph_hash, module_path
from backend.inference.predictor import Predictor
from conftest import export_tiny_model, make_capsule_chain, rewrite_meta

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "autoskin.onnx"


@pytest.fixture(autouse=True)
def fresh_cache():
    session.clear_cache()
    yield
    session.clear_cache()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return export_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx")


def with_noise_in_largest_weight(src: Path, dst: Path) -> Path:
    proto = onnx.load(str(src))
    largest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(largest)
    noise = np.random.default_rng(0).standard_normal(arr.shape).astype(arr.dtype) * float(arr.std() + 1e-3)
    largest.CopyFrom(numpy_helper.from_array(noise, largest.name))
    onnx.save_model(proto, str(dst))
    return dst


def test_the_shipped_and_a_fresh_model_verify():
    meta = {p.key: p.value for p in onnx.load(str(SHIPPED)).metadata_props}
    card = json.loads((SHIPPED.parent / "model_card.json").read_text())
    assert card["sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest(), "the card describes the shipped file"
    assert session.open_session(SHIPPED, "cpu").info.model_version == meta[KEY_MODEL_VERSION] != ""
    assert graph_hash(SHIPPED.read_bytes()) == meta[KEY_WEIGHTS_HASH]


def test_a_model_with_a_replaced_weight_matrix_is_refused(tiny, tmp_path):
    bad = with_noise_in_largest_weight(tiny, tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="weights do not match the weights_sha256") as err:
        session.open_session(bad, "cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError):
        Predictor(str(bad), device="cpu").predict(make_capsule_chain(3))


def test_the_shipped_model_with_noise_is_refused(tmp_path):
    bad = with_noise_in_largest_weight(SHIPPED, tmp_path / "shipped_bad.onnx")
    with pytest.raises(ModelError, match="weights_sha256"):
        session.open_session(bad, "cpu")


def test_a_model_without_a_hash_or_with_another_hash_is_refused(tiny, tmp_path):
    with pytest.raises(ModelError, match="no weights_sha256"):
        session.open_session(rewrite_meta(tiny, tmp_path / "none.onnx", **{KEY_WEIGHTS_HASH: None}), "cpu")
    with pytest.raises(ModelError, match="do not match"):
        session.open_session(rewrite_meta(tiny, tmp_path / "other.onnx", **{KEY_WEIGHTS_HASH: "0" * 64}), "cpu")


def test_a_generator_with_unused_parameters_records_the_hash_its_graph_holds(tmp_path):
    import torch

    from backend.export.onnx_export import export_generator
    from backend.features.pipeline import FeatureConfig
    from backend.models.generator import Generator

    torch.manual_seed(0)
    model = Generator(hidden=8, fused=8, use_prior=False)  # prior_gain is never used, so never exported
    res = export_generator(model, tmp_path / "m.onnx", FeatureConfig(k_bones=4, distance="euclidean"),
                           method="torchscript")
    assert res.metadata[KEY_GRAPH_WEIGHTS_HASH] != res.metadata[KEY_WEIGHTS_HASH]
    session.open_session(tmp_path / "m.onnx", "cpu")


def test_module_path_of_torchscript_scopes():
    assert module_path("/members.0/scorer/scorer.0/MatMul") == "members.0.scorer.0"
    assert module_path("/context.1/layer/lin_nbr/MatMul") == "context.1.layer.lin_nbr"
    assert module_path("/fuse_b/MatMul") == "fuse_b"
