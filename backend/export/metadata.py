"""Metadata written into an exported model (keys in ``backend.inference.model_meta``)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Mapping

import numpy as np

from backend.features.pipeline import FEATURE_VERSION, FeatureConfig, feature_code_hash
from backend.inference import model_meta as mm
from backend.inference.postprocess import check_clean_up


def weights_hash(state_dict: Mapping[str, object]) -> str:
    """sha256 over the parameter names, shapes, dtypes and bytes (sorted by name), hex."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        arr = np.ascontiguousarray(_to_numpy(state_dict[name]))
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(str(arr.dtype).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _to_numpy(t: object) -> np.ndarray:
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(t)


#: The metadata keys of the run-time settings (each written by :func:`runtime_metadata` when it applies).
RUNTIME_KEYS = (mm.KEY_PRIOR_BLEND, mm.KEY_PRIOR_BLEND_RULE, mm.KEY_SHARPEN, mm.KEY_SMOOTH, mm.KEY_DIFFUSE,
                mm.KEY_GEODESIC_SHARE, mm.KEY_ENCLOSING_PIECES)


def runtime_metadata(prior_blend: float = 1.0, prior_blend_rule: dict | None = None, sharpen: float = 1.0,
                     smooth: int = 0, diffuse: float = 0.0, geodesic_share: float = 0.0,
                     enclosing_pieces: float = 0.0) -> dict[str, str]:
    """The metadata of a model's run-time settings, as strings (ValueError naming a value out of range or
    a malformed rule). ``prior_blend`` in [0, 1] is the generator's share of the runtime weights (see
    model_meta.KEY_PRIOR_BLEND); ``prior_blend_rule`` (PieceBlendRule.as_dict()) makes that share depend
    on the rig; ``sharpen`` in [1, 10] is the power the runtime raises the weights to before limiting
    them (model_meta.KEY_SHARPEN); ``smooth`` the Laplacian iterations it applies first
    (model_meta.KEY_SMOOTH), then ``diffuse`` the reach of its heat diffusion in % of the character's size
    (model_meta.KEY_DIFFUSE); ``geodesic_share`` in [0, 1] the share of the geodesic falloff mixed in
    (model_meta.KEY_GEODESIC_SHARE, written when > 0); ``enclosing_pieces`` in [0, 1] the largest surface
    share of a piece given to the one bone it encloses (model_meta.KEY_ENCLOSING_PIECES, written when > 0).
    """
    if not 0.0 <= prior_blend <= 1.0:
        raise ValueError(f"prior_blend must be in [0, 1], got {prior_blend}")
    check_clean_up(sharpen, smooth, diffuse)
    if not 0.0 <= geodesic_share <= 1.0:
        raise ValueError(f"geodesic_share must be in [0, 1], got {geodesic_share}")
    if not 0.0 <= enclosing_pieces <= 1.0:
        raise ValueError(f"enclosing_pieces must be in [0, 1], got {enclosing_pieces}")
    meta = {mm.KEY_PRIOR_BLEND: repr(float(prior_blend)), mm.KEY_SHARPEN: repr(float(sharpen)),
            mm.KEY_SMOOTH: str(int(smooth)), mm.KEY_DIFFUSE: repr(float(diffuse))}
    if geodesic_share > 0.0:
        meta[mm.KEY_GEODESIC_SHARE] = repr(float(geodesic_share))
    if enclosing_pieces > 0.0:
        meta[mm.KEY_ENCLOSING_PIECES] = repr(float(enclosing_pieces))
    if prior_blend_rule is not None:
        from backend.inference.blend_rule import PieceBlendRule

        rule = PieceBlendRule.from_dict(prior_blend_rule)  # ValueError when malformed
        meta[mm.KEY_PRIOR_BLEND_RULE] = json.dumps(rule.as_dict(), sort_keys=True)
    return meta


def build_metadata(feature_config: FeatureConfig, model_config: dict, state_dict: Mapping[str, object],
                   train_summary: dict | None = None, model_version: str | None = None,
                   quantization: str = "none", runtime: Mapping[str, str] | None = None) -> dict[str, str]:
    """All metadata_props of an exported model, as strings: its identity and ``runtime``, the metadata
    of its run-time settings (:func:`runtime_metadata`; None: the defaults).

    ``model_version`` defaults to ``g-<first 12 hex of the weights hash>``.
    """
    runtime = runtime_metadata() if runtime is None else runtime
    whash = weights_hash(state_dict)
    meta = {
        mm.KEY_FORMAT: mm.MODEL_FORMAT,
        mm.KEY_FEATURE_VERSION: FEATURE_VERSION,
        mm.KEY_FEATURE_HASH: feature_code_hash(),
        mm.KEY_FEATURE_CONFIG: json.dumps(mm.feature_config_to_dict(feature_config), sort_keys=True),
        mm.KEY_MODEL_CONFIG: json.dumps(model_config, sort_keys=True, default=str),
        mm.KEY_TRAIN_SUMMARY: json.dumps(train_summary or {}, sort_keys=True, default=str),
        mm.KEY_DATE: _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        mm.KEY_MODEL_VERSION: model_version or f"g-{whash[:12]}",
        mm.KEY_WEIGHTS_HASH: whash,
        mm.KEY_QUANTIZATION: quantization,
    }
    return {**meta, **runtime}


def set_metadata(model: object, meta: Mapping[str, str]) -> None:
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` with ``meta`` (keys not in ``meta`` are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in meta]  # type: ignore[attr-defined]
    del model.metadata_props[:]  # type: ignore[attr-defined]
    for k, v in keep + sorted(meta.items()):
        p = model.metadata_props.add()  # type: ignore[attr-defined]
        p.key, p.value = str(k), str(v)


def get_metadata(model: object) -> dict[str, str]:
    """``metadata_props`` of an ``onnx.ModelProto`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}  # type: ignore[attr-defined]
