"""Publishing a fine-tuned version (backend.training.publish): the files it writes keep every run-time
setting of the model in use, read back as the runtime reads them (the ONNX metadata through
backend.inference.model_meta) and named in the card; a model in use with an invalid setting stops a
publication before anything is written; a failed publication leaves nothing behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.inference import model_store
from backend.inference.blend_rule import PieceBlendRule
from backend.inference.model_meta import ModelError, parse_model_info, read_runtime_settings
from backend.training.publish import publish, settings_in_use, write_version
from conftest import rewrite_meta

FC = FeatureConfig(k_bones=3, distance="euclidean")
DEFAULTS = dict(prior_blend=1.0, prior_blend_rule=None, sharpen=1.0, smooth=0, diffuse=0.0, geodesic_share=0.0,
                enclosing_pieces=0.0)
RULE = PieceBlendRule(low=0.15, high=1.0, saturation=0.1).as_dict()


@pytest.fixture(scope="module")
def in_use(tmp_path_factory):
    """Factory: ``in_use(models)`` puts a tiny exported model that stores no setting in ``models`` as
    the model in use."""
    import shutil

    from backend.export.onnx_export import export_random_generator

    src = tmp_path_factory.mktemp("in_use") / "autoskin.onnx"
    export_random_generator(src, hidden=8, fused=8, seed=0, feature_config=FC, method="torchscript")

    def make(models: Path) -> Path:
        models.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(src, models / "autoskin.onnx"))

    return make


def generator():
    from backend.models.generator import Generator

    torch.manual_seed(0)
    G = Generator(hidden=8, fused=8).eval()
    return G, {"config": G.config, "feature_config": FC.key_fields(), "feature_version": FEATURE_VERSION}


def card() -> dict:
    """A fine-tuning card as run_finetune writes it (only what publishing and the card text read)."""
    score = {"l1": 0.5, "l1_focus": 0.7, "deform_mean": 1.2, "rigs": 2}
    return {"created": "2025-01-02T00:00:00+00:00", "base": {"checkpoint": "autoskin.pth", "model_version": None},
            "corrections": [{"file": "c.npz", "sha256": "ab" * 32, "vertices": 120, "changed_vertices": 30,
                             "source_file": "hero.blend", "model_version": "autoskin-v0"}],
            "skipped": [], "options": {"replay_share": 0.5, "changed_weight": 5.0, "tolerance": 0.02},
            "training": {"steps": 6}, "metrics": {"val_old": score, "val_new": dict(score, l1=0.49),
                                                  "corr_old": score, "corr_new": score, "val_delta": -0.01}}


def published(models: Path, **stored: str) -> model_store.ModelVersion:
    """Publish a tiny generator into ``models`` (not made the model in use), the model in use first
    given the metadata ``stored`` when it exists."""
    if stored:
        rewrite_meta(models / "autoskin.onnx", models / "autoskin.onnx", **stored)
    G, ckpt = generator()
    return publish(models, G, ckpt, card(), export_method="torchscript", activate=False)


def read_back(mv: model_store.ModelVersion) -> dict:
    """The run-time settings of a published version's ONNX file, as the runtime reads them."""
    import onnx

    from backend.export.metadata import get_metadata

    meta = get_metadata(onnx.load(str(mv.onnx)))
    assert parse_model_info(meta, mv.onnx).model_version == f"autoskin-v{mv.version}"  # the runtime loads it
    return read_runtime_settings(meta, mv.onnx).stored_values()


def test_a_version_published_without_a_model_in_use_has_the_default_settings(tmp_path):
    models = tmp_path / "models"
    mv = published(models)
    assert mv.version == 1 and read_back(mv) == DEFAULTS
    assert {k: mv.card[k] for k in DEFAULTS} == DEFAULTS
    text = mv.card_path.with_suffix(".md").read_text()
    assert "prior blend 1, geodesic share 0, smooth 0, diffuse 0 %, sharpen 1" in text
    assert "| validation (2 rigs) | 0.5000 | 0.4900 |" in text and "| c.npz | `abababababababab` |" in text
    assert model_store.current_model(models) is None  # not activated


def test_a_published_version_keeps_every_setting_of_the_model_in_use(tmp_path, in_use):
    models = tmp_path / "models"
    in_use(models)
    assert read_back(published(models)) == DEFAULTS  # a model in use that stores none
    stored = dict(prior_blend="0.4", prior_blend_rule=json.dumps(RULE), sharpen="1.4", smooth="2", diffuse="0.5",
                  geodesic_share="0.25", enclosing_pieces="0.15")
    mv = published(models, **stored)
    want = dict(prior_blend=0.4, prior_blend_rule=RULE, sharpen=1.4, smooth=2, diffuse=0.5, geodesic_share=0.25,
                enclosing_pieces=0.15)
    assert read_back(mv) == want == settings_in_use(models).stored_values()
    assert {k: mv.card[k] for k in want} == want
    text = mv.card_path.with_suffix(".md").read_text()
    assert ("per-rig blend rule (low 0.15, high 1, saturation 0.1, step 0.05, small 0.05), geodesic share 0.25, "
            "smooth 2, diffuse 0.5 %, sharpen 1.4, pieces under 0.15 of the surface to the bone they enclose") in text


@pytest.mark.parametrize("key,value", [("prior_blend", "lots"), ("sharpen", "0.5"), ("smooth", "-3"),
                                       ("diffuse", "7"), ("geodesic_share", "2"), ("enclosing_pieces", "-1"),
                                       ("prior_blend_rule", json.dumps({**RULE, "low": 3}))])
def test_an_invalid_setting_of_the_model_in_use_stops_publishing(tmp_path, in_use, key, value):
    """Never silently replaced by another setting: the run stops (fine-tuning reads the settings
    before it trains) and nothing is written."""
    models = tmp_path / "models"
    in_use(models)
    rewrite_meta(models / "autoskin.onnx", models / "autoskin.onnx", **{key: value})
    with pytest.raises(ModelError, match=key):
        settings_in_use(models)
    with pytest.raises(ModelError, match=key):
        published(models)
    assert sorted(p.name for p in models.iterdir()) == ["autoskin.onnx"]


def test_a_failed_publication_leaves_nothing(tmp_path):
    models = tmp_path / "models"

    def write(n: int, paths: dict) -> dict:
        paths["onnx"].write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        write_version(models, write, lambda card: "")
    assert list(models.iterdir()) == [] and model_store.next_version(models) == 1
