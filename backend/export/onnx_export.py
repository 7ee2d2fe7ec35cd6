"""Export the generator to one self-contained ONNX file with metadata, and check it.

Inputs (all axes but the feature axes dynamic): vertex_feat (V, FV) float32, neighbors (V, N)
int64, bone_feat (Jd, FB) float32, cand (V, K) int64, pair_feat (V, K, FP) float32, prior (V, K)
float32 -> weights (V, K) float32. The dynamo exporter is tried first and the TorchScript one
second; an export counts only if onnxruntime reproduces torch on sizes other than the traced ones.
"""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from backend.export.metadata import build_metadata, runtime_metadata, set_metadata
from backend.features.pipeline import FB, FEATURE_VERSION, FP, FV, FeatureConfig
from backend.inference.model_meta import (INPUT_NAMES, KEY_GRAPH_WEIGHTS_HASH, KEY_WEIGHTS_HASH, OUTPUT_NAME,
                                          ModelError)
from backend.inference.onnx_weights import graph_hash
from backend.io.atomic import atomic_path
# ``load_checkpoint``: the generator loader, under the name that backend.training.steps imports from here
from backend.models.checkpoint import load_generator_checkpoint as load_checkpoint  # noqa: F401
from backend.models.generator import Generator

log = logging.getLogger(__name__)

OPSET = 18
#: Ops the graph must not contain: ScatterND with reduction='add' loses updates on multi-threaded CPU.
FORBIDDEN_OPS = frozenset({"ScatterND", "ScatterElements", "Scatter"})
#: Traced sizes (V, N, Jd, K): all distinct and > 1 so that no axis gets specialised.
TRACE_SIZES = (53, 7, 6, 5)
#: Sizes the parity check runs on (differ from the traced ones, include K = 1 and N = 1 edge cases).
CHECK_SIZES = ((211, 12, 23, 8), (17, 3, 2, 2), (9, 1, 1, 1))


@dataclass
class ExportResult:
    """What :func:`export_generator` wrote."""

    path: str
    method: str  # "dynamo" or "torchscript"
    size_bytes: int
    max_abs_diff: float  # torch vs onnxruntime on CHECK_SIZES
    op_types: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # exporters tried first that failed, with the reason

    def as_dict(self) -> dict:
        return asdict(self)


def example_inputs(V: int, N: int, Jd: int, K: int, seed: int = 0, fp: int = FP) -> dict[str, np.ndarray]:
    """Random but valid generator inputs of the given sizes (numpy, ONNX names); ``fp`` pair-feature columns."""
    rng = np.random.default_rng(seed)
    prior = rng.random((V, K)).astype(np.float32) + 0.05
    prior /= prior.sum(axis=1, keepdims=True)
    return {
        "vertex_feat": rng.standard_normal((V, FV)).astype(np.float32),
        "neighbors": rng.integers(0, V, (V, N)).astype(np.int64),
        "bone_feat": rng.standard_normal((Jd, FB)).astype(np.float32),
        "cand": rng.integers(0, Jd, (V, K)).astype(np.int64),
        "pair_feat": rng.standard_normal((V, K, fp)).astype(np.float32),
        "prior": prior,
    }


def _torch_args(inputs: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(inputs[k])) for k in INPUT_NAMES)


def torch_forward(model: Generator, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """(V, K) float32 weights of ``model`` in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        return model(*_torch_args(inputs)).numpy()


def _dynamo_export(model: Generator, args: tuple, path: Path, opset: int) -> None:
    V = torch.export.Dim("V", min=1)
    N = torch.export.Dim("N", min=1)
    Jd = torch.export.Dim("Jd", min=1)
    K = torch.export.Dim("K", min=1)
    shapes = {
        "vertex_feat": {0: V}, "neighbors": {0: V, 1: N}, "bone_feat": {0: Jd},
        "cand": {0: V, 1: K}, "pair_feat": {0: V, 1: K}, "prior": {0: V, 1: K},
    }
    prog = torch.onnx.export(model, args, dynamo=True, opset_version=opset, input_names=list(INPUT_NAMES),
                             output_names=[OUTPUT_NAME], dynamic_shapes=shapes, external_data=False,
                             optimize=True, verbose=False)
    prog.save(str(path))


def _torchscript_export(model: Generator, args: tuple, path: Path, opset: int) -> None:
    axes = {
        "vertex_feat": {0: "V"}, "neighbors": {0: "V", 1: "N"}, "bone_feat": {0: "Jd"},
        "cand": {0: "V", 1: "K"}, "pair_feat": {0: "V", 1: "K"}, "prior": {0: "V", 1: "K"},
        OUTPUT_NAME: {0: "V", 1: "K"},
    }
    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
                      output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)


def op_types(model: onnx.ModelProto) -> list[str]:
    """Sorted op types of the graph, its functions and subgraphs."""
    ops: set[str] = set()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            ops.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            ops.add(node.op_type)
    return sorted(ops)


def onnx_parity(model: Generator, onnx_path: str | Path, sizes=CHECK_SIZES, threads: int = 4,
                seed: int = 1) -> float:
    """Max |torch - onnxruntime| over random inputs of ``sizes`` (V, N, Jd, K), CPU, ``threads`` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for i, s in enumerate(sizes):
        inputs = example_inputs(*s, seed=seed + i, fp=model.config.get("fp", FP))
        ref = torch_forward(model, inputs)
        got = sess.run([OUTPUT_NAME], inputs)[0]
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_generator(model: Generator, out_path: str | Path, feature_config: FeatureConfig,
                     train_summary: dict | None = None, model_version: str | None = None,
                     opset: int = OPSET, method: str = "auto", atol: float = 1e-5,
                     prior_blend: float = 1.0, prior_blend_rule: dict | None = None,
                     sharpen: float = 1.0, smooth: int = 0, diffuse: float = 0.0,
                     geodesic_share: float = 0.0, enclosing_pieces: float = 0.0) -> ExportResult:
    """Write ``model`` to ``out_path`` (atomically) as a single .onnx with metadata.

    method: "auto" (dynamo, then torchscript if dynamo fails or disagrees with torch),
    "dynamo" or "torchscript". Raises RuntimeError when no method gives a graph that matches torch
    to ``atol`` or the graph contains a scatter op. ``prior_blend``: stored in the metadata
    (the generator's share of the runtime weights, see backend.inference.model_meta);
    ``prior_blend_rule``: an optional per-rig rule (backend.inference.blend_rule.PieceBlendRule.as_dict());
    ``sharpen`` / ``smooth`` / ``diffuse``: the runtime's sharpening power, smoothing iterations and
    diffusion reach for this model (backend.inference.model_meta.KEY_SHARPEN / KEY_SMOOTH / KEY_DIFFUSE);
    ``geodesic_share``: the share of the geodesic falloff mixed in (model_meta.KEY_GEODESIC_SHARE);
    ``enclosing_pieces``: pieces under this surface share go to the one bone they enclose
    (model_meta.KEY_ENCLOSING_PIECES).
    """
    out_path = Path(out_path)
    # refuse bad settings or a malformed rule before any work (ValueError names the value)
    runtime = runtime_metadata(prior_blend=prior_blend, prior_blend_rule=prior_blend_rule, sharpen=sharpen,
                               smooth=smooth, diffuse=diffuse, geodesic_share=geodesic_share,
                               enclosing_pieces=enclosing_pieces)
    model = model.eval().cpu()
    args = _torch_args(example_inputs(*TRACE_SIZES, fp=model.config.get("fp", FP)))
    methods = {"auto": ["dynamo", "torchscript"], "dynamo": ["dynamo"], "torchscript": ["torchscript"]}[method]
    errors: list[str] = []
    with atomic_path(out_path, suffix=".onnx") as tmp:
        for m in methods:
            try:
                with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    (_dynamo_export if m == "dynamo" else _torchscript_export)(model, args, tmp, opset)
                proto = onnx.load(str(tmp))
                ops = op_types(proto)
                bad = sorted(FORBIDDEN_OPS & set(ops))
                if bad:
                    raise RuntimeError(f"graph contains scatter ops {bad}")
                meta = build_metadata(feature_config, dict(model.config), model.state_dict(), train_summary,
                                      model_version, runtime=runtime)
                meta["exporter"] = f"torch {torch.__version__} {m}"
                held = graph_hash(proto.SerializeToString())
                if held != meta[KEY_WEIGHTS_HASH]:  # parameters the forward pass never uses were dropped
                    meta[KEY_GRAPH_WEIGHTS_HASH] = held
                set_metadata(proto, meta)
                onnx.checker.check_model(proto)
                onnx.save_model(proto, str(tmp), save_as_external_data=False)
                diff = onnx_parity(model, tmp)
                if not diff <= atol:
                    raise RuntimeError(f"onnxruntime differs from torch by {diff:.3g} (> {atol})")
                log.info("exported with %s, max diff %.3g", m, diff)
                result = ExportResult(path=str(out_path), method=m, size_bytes=tmp.stat().st_size,
                                      max_abs_diff=diff, op_types=ops, metadata=meta, failed=list(errors))
                break
            except Exception as exc:  # noqa: BLE001 -- try the next exporter, report all failures
                errors.append(f"{m}: {type(exc).__name__}: {exc}")
                log.info("ONNX export with %s failed: %s", m, exc)
        else:
            raise RuntimeError("ONNX export failed: " + " | ".join(errors))
    return result


def feature_config_of(ckpt: dict, source: str = "<checkpoint>") -> FeatureConfig:
    """The checkpoint's FeatureConfig; refuses a checkpoint made with other feature code."""
    ver = ckpt.get("feature_version")
    if ver is not None and ver != FEATURE_VERSION:
        raise ModelError(f"{source}: trained with features {ver!r}, the installed code is {FEATURE_VERSION!r}")
    cfg = ckpt.get("feature_config") or {}
    if isinstance(cfg, FeatureConfig):
        return cfg
    try:
        return FeatureConfig(**cfg)
    except TypeError as exc:
        raise ModelError(f"{source}: bad feature_config ({exc})") from None


def export_random_generator(out_path: str | Path, hidden: int = 32, fused: int = 32, seed: int = 0,
                            feature_config: FeatureConfig = FeatureConfig(), method: str = "auto") -> ExportResult:
    """A randomly initialised generator exported like a trained one (tests, smoke runs)."""
    torch.manual_seed(seed)
    model = Generator(hidden=hidden, fused=fused)
    return export_generator(model, out_path, feature_config, train_summary={"note": "random init", "seed": seed},
                            method=method)
