"""Optional int8 dynamic quantisation of an exported model, with its measured accuracy change."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from backend.export.metadata import get_metadata, set_metadata
from backend.inference import model_meta as mm
from backend.io.atomic import atomic_path


@dataclass
class QuantizeReport:
    """Sizes and the accuracy change of the int8 model against the fp32 one on ``sample``."""

    path: str
    fp32_bytes: int
    int8_bytes: int
    max_abs_diff: float  # over (V, K) weights
    mean_abs_diff: float
    sample: str

    def as_dict(self) -> dict:
        return asdict(self)


def quantize_int8(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time) of the MatMul / Gemm
    weights; the metadata is copied over with ``quantization=int8``. Written atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    meta = get_metadata(onnx.load(str(fp32_path)))
    with atomic_path(out_path, suffix=".onnx") as tmp:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"])
        proto = onnx.load(str(tmp))
        meta[mm.KEY_QUANTIZATION] = "int8"
        set_metadata(proto, meta)
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    return out_path


def compare_models(path_a: str | Path, path_b: str | Path, inputs: dict[str, np.ndarray],
                   threads: int = 1) -> tuple[float, float]:
    """(max, mean) |a - b| of the two models' (V, K) outputs on ``inputs``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    outs = []
    for p in (path_a, path_b):
        sess = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
        outs.append(sess.run([mm.OUTPUT_NAME], {k: inputs[k] for k in mm.INPUT_NAMES})[0])
    d = np.abs(outs[0].astype(np.float64) - outs[1])
    return float(d.max()), float(d.mean())


def quantize_with_report(fp32_path: str | Path, out_path: str | Path, inputs: dict[str, np.ndarray],
                         sample: str) -> QuantizeReport:
    """Quantise and measure on one sample's generator ``inputs``."""
    quantize_int8(fp32_path, out_path)
    mx, mean = compare_models(fp32_path, out_path, inputs)
    return QuantizeReport(path=str(out_path), fp32_bytes=Path(fp32_path).stat().st_size,
                          int8_bytes=Path(out_path).stat().st_size, max_abs_diff=mx, mean_abs_diff=mean,
                          sample=sample)


def report_json(report: QuantizeReport) -> str:
    return json.dumps(report.as_dict(), indent=2)
