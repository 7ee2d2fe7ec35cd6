"""The metadata an Auto Skin ONNX model carries, and the run-time compatibility check.

Torch-free: the exporter (``backend.export.metadata``) writes these keys into the model's
``metadata_props``; the runtime reads them back through onnxruntime and refuses a model whose
feature code differs from the installed one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from backend.features.pipeline import FEATURE_VERSION, FeatureConfig, feature_code_hash
from backend.inference.blend_rule import PieceBlendRule
from backend.inference.runtime_settings import RANGES, RuntimeSettings
from backend.rig import RigError

#: Format tag of the models this runtime reads.
MODEL_FORMAT = "autoskin-onnx-1"
INPUT_NAMES = ("vertex_feat", "neighbors", "bone_feat", "cand", "pair_feat", "prior")
OUTPUT_NAME = "weights"

KEY_FORMAT = "autoskin_format"
KEY_FEATURE_VERSION = "feature_version"
KEY_FEATURE_HASH = "feature_hash"
KEY_FEATURE_CONFIG = "feature_config"
KEY_MODEL_CONFIG = "model_config"
KEY_TRAIN_SUMMARY = "train_summary"
KEY_DATE = "export_date"
KEY_MODEL_VERSION = "model_version"
KEY_WEIGHTS_HASH = "weights_sha256"
KEY_GRAPH_WEIGHTS_HASH = "graph_weights_sha256"
"""The same hash over the parameters the graph holds, written only when it differs from
``weights_sha256`` (the exporter drops parameters the forward pass never uses); the runtime checks
the file against this one when present (backend.inference.onnx_weights)."""
KEY_PRIOR_BLEND = "prior_blend"
"""Share of the generator's output in the runtime weights; the rest is the prior input (the heat or
geodesic field the generator was given). Absent means 1.0 (the generator alone)."""
KEY_PRIOR_BLEND_RULE = "prior_blend_rule"
"""Optional JSON of a per-rig blend rule (backend.inference.blend_rule.PieceBlendRule); when present
the runtime uses it instead of ``prior_blend`` unless the caller fixes a blend."""
KEY_SHARPEN = "sharpen"
"""Sharpening power the runtime applies to this model's weights before the influence limit
(backend.inference.postprocess.sharpen_weights), chosen with the model on validation rigs. Absent
means 1.0 (no sharpening)."""
KEY_SMOOTH = "smooth"
"""Laplacian smoothing iterations the runtime applies to this model's weights before sharpening
(backend.inference.postprocess.smooth_weights), chosen with the model on validation rigs. Absent
means 0."""
KEY_DIFFUSE = "diffuse"
"""Reach of the heat diffusion the runtime applies to this model's weights before sharpening, in % of
the character's bounding-box diagonal (backend.inference.postprocess.diffuse_weights), chosen with the
model on validation rigs. Absent means 0 (none)."""
KEY_GEODESIC_SHARE = "geodesic_share"
"""Share of the geodesic falloff over the candidates (backend.features.geodesic.geodesic_weights of the
candidate distances the features hold) in the runtime weights, mixed in after the prior blend and
before the clean-up; refitted on a studio's corrections (backend.training.style). Absent means 0."""
KEY_ENCLOSING_PIECES = "enclosing_pieces"
"""The largest share of the surface a separate piece may hold and still be given to the one deform bone
whose midpoint its convex hull encloses (backend.inference.enclosed_bones), after the clean-up. Absent
means 0 (never)."""
#: Column of ``pair_feat`` holding each candidate's (geodesic, else Euclidean) distance
#: (backend.features.pipeline.compute_features).
DISTANCE_COLUMN = 5
KEY_QUANTIZATION = "quantization"
REQUIRED_KEYS = (KEY_FORMAT, KEY_FEATURE_VERSION, KEY_FEATURE_HASH, KEY_FEATURE_CONFIG)


class ModelError(RigError):
    """A model file is missing, unreadable or does not match the installed feature code."""


@dataclass(frozen=True)
class ModelInfo:
    """Parsed metadata of one model file; ``settings``: the run-time settings it stores."""

    path: str
    feature_config: FeatureConfig
    feature_version: str
    feature_hash: str
    model_version: str
    export_date: str
    weights_hash: str
    quantization: str
    model_config: dict
    train_summary: dict
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    graph_weights_hash: str = ""  # KEY_GRAPH_WEIGHTS_HASH, "" when absent

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "model_version": self.model_version,
            "export_date": self.export_date,
            "weights_sha256": self.weights_hash,
            "quantization": self.quantization,
            **self.settings.stored_values(),
            "feature_version": self.feature_version,
            "feature_config": feature_config_to_dict(self.feature_config),
        }


def feature_config_to_dict(config: FeatureConfig) -> dict:
    """The stored feature config: options added later are left out at their default, so a model that
    does not use them still loads in an older runtime."""
    return config.key_fields()


def feature_config_from_json(text: str, source: str) -> FeatureConfig:
    """Parse the stored feature config; unknown fields are refused (they mean newer feature code)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{source}: feature_config metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{source}: feature_config metadata must be a JSON object")
    known = {f.name for f in fields(FeatureConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError(f"{source}: the model was made with feature options {unknown} that this "
                         f"version of the feature code does not know; update Auto Skin or re-export the model")
    try:
        return FeatureConfig(**data)
    except TypeError as exc:
        raise ModelError(f"{source}: bad feature_config metadata ({exc})") from None


def _parse_bounded(meta: Mapping[str, str], key: str, default: str, source: str | Path) -> float | int:
    """Setting ``key`` of ``meta`` (``default`` when absent) as RANGES[key] takes it; ModelError naming
    ``source`` and ``key`` unless it converts and lies in its range."""
    rng = RANGES[key]
    convert = int if rng.whole else float
    text = meta.get(key, default)
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or value not in rng:
        kind = "a whole number" if convert is int else "a number"
        raise ModelError(f"{source}: {key} metadata must be {kind} in [{rng.low:g}, {rng.high:g}], got {text!r}")
    return value


def parse_prior_blend(meta: Mapping[str, str], source: str | Path) -> float:
    """The ``prior_blend`` of a model's metadata (1.0 when absent); ModelError naming ``source`` unless
    it is a number in [0, 1]."""
    return _parse_bounded(meta, KEY_PRIOR_BLEND, "1.0", source)


def parse_sharpen(meta: Mapping[str, str], source: str | Path) -> float:
    """The ``sharpen`` power of a model's metadata (1.0 when absent); ModelError naming ``source`` unless
    it is a number in SHARPEN_RANGE."""
    return _parse_bounded(meta, KEY_SHARPEN, "1.0", source)


def parse_smooth(meta: Mapping[str, str], source: str | Path) -> int:
    """The ``smooth`` iterations of a model's metadata (0 when absent); ModelError naming ``source``
    unless it is a whole number in [0, MAX_SMOOTH]."""
    return _parse_bounded(meta, KEY_SMOOTH, "0", source)


def parse_diffuse(meta: Mapping[str, str], source: str | Path) -> float:
    """The ``diffuse`` radius (% of the diagonal) of a model's metadata (0 when absent); ModelError naming
    ``source`` unless it is a number in [0, MAX_DIFFUSE]."""
    return _parse_bounded(meta, KEY_DIFFUSE, "0.0", source)


def parse_geodesic_share(meta: Mapping[str, str], source: str | Path) -> float:
    """The ``geodesic_share`` of a model's metadata (0 when absent); ModelError naming ``source`` unless
    it is a number in [0, 1]."""
    return _parse_bounded(meta, KEY_GEODESIC_SHARE, "0.0", source)


def parse_enclosing_pieces(meta: Mapping[str, str], source: str | Path) -> float:
    """The ``enclosing_pieces`` share of a model's metadata (0 when absent); ModelError naming ``source``
    unless it is a number in [0, 1]."""
    return _parse_bounded(meta, KEY_ENCLOSING_PIECES, "0.0", source)


def parse_prior_blend_rule(meta: Mapping[str, str], source: str | Path) -> PieceBlendRule | None:
    """The model's per-rig blend rule (None when absent); ModelError naming ``source`` when malformed."""
    text = meta.get(KEY_PRIOR_BLEND_RULE)
    if text is None or not text.strip():
        return None
    try:
        return PieceBlendRule.from_dict(json.loads(text))
    except (json.JSONDecodeError, ValueError) as exc:
        raise ModelError(f"{source}: {KEY_PRIOR_BLEND_RULE} metadata is not a valid blend rule ({exc})") from None


def read_runtime_settings(meta: Mapping[str, str], source: str | Path) -> RuntimeSettings:
    """The run-time settings a model's metadata stores, each parsed and checked as above (ModelError
    naming ``source`` and the key); ``prune`` is the runtime's default."""
    return RuntimeSettings(
        prior_blend=parse_prior_blend(meta, source), prior_blend_rule=parse_prior_blend_rule(meta, source),
        sharpen=parse_sharpen(meta, source), smooth=parse_smooth(meta, source),
        diffuse=parse_diffuse(meta, source), geodesic_share=parse_geodesic_share(meta, source),
        enclosing_pieces=parse_enclosing_pieces(meta, source))


def parse_model_info(meta: Mapping[str, str], source: str | Path) -> ModelInfo:
    """Check ``meta`` (the model's metadata_props) against the installed feature code.

    Raises ModelError naming ``source`` when a key is missing or the feature version / hash differ.
    """
    source = str(source)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{source}: not an Auto Skin model (metadata keys {missing} are missing); "
                         f"export it with `python -m backend export`")
    if meta[KEY_FORMAT] != MODEL_FORMAT:
        raise ModelError(f"{source}: model format {meta[KEY_FORMAT]!r}, this runtime reads {MODEL_FORMAT!r}")
    if meta[KEY_FEATURE_VERSION] != FEATURE_VERSION:
        raise ModelError(f"{source}: the model was trained with features {meta[KEY_FEATURE_VERSION]!r} but the "
                         f"installed feature code is {FEATURE_VERSION!r}; the model and the code do not match "
                         f"(re-export a model trained with this code, or install the matching Auto Skin version)")
    if meta[KEY_FEATURE_HASH] != feature_code_hash():
        raise ModelError(f"{source}: feature code hash {meta[KEY_FEATURE_HASH]!r} differs from the installed "
                         f"{feature_code_hash()!r}; the model and the feature code do not match")
    cfg = feature_config_from_json(meta[KEY_FEATURE_CONFIG], source)

    def _json(key: str) -> dict:
        try:
            val = json.loads(meta.get(key, "{}") or "{}")
        except json.JSONDecodeError:
            return {}
        return val if isinstance(val, dict) else {"value": val}

    return ModelInfo(
        settings=read_runtime_settings(meta, source),
        path=source,
        feature_config=cfg,
        feature_version=meta[KEY_FEATURE_VERSION],
        feature_hash=meta[KEY_FEATURE_HASH],
        model_version=meta.get(KEY_MODEL_VERSION, "unknown"),
        export_date=meta.get(KEY_DATE, "unknown"),
        weights_hash=meta.get(KEY_WEIGHTS_HASH, ""),
        graph_weights_hash=meta.get(KEY_GRAPH_WEIGHTS_HASH, ""),
        quantization=meta.get(KEY_QUANTIZATION, "none"),
        model_config=_json(KEY_MODEL_CONFIG),
        train_summary=_json(KEY_TRAIN_SUMMARY),
    )
