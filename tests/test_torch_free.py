"""The runtime works in a process where importing torch is impossible (as inside Blender)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from backend.export.onnx_export import export_random_generator
from backend.features.pipeline import FeatureConfig
from backend.io.npz import save_npz
from conftest import make_capsule_chain

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torch_geometric", "onnxscript"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
        blocked = False
    except ImportError:
        blocked = True

    import argparse
    import numpy as np
    import backend.inference
    import backend.inference.model_meta, backend.inference.postprocess, backend.inference.rigfiles
    import backend.features.pipeline
    import backend.rig
    import backend.io, backend.io.npz
    from backend.inference.predictor import Predictor
    from backend.cli import predict as predict_cmd

    model, rig_path, in_dir, out_dir = sys.argv[1:5]
    rig = backend.io.npz.load_npz(rig_path)
    pred = Predictor(model, threads=2).predict(rig, max_influences=3)
    geo = Predictor(mode="geodesic").predict(rig, max_influences=3)
    parser = argparse.ArgumentParser()
    predict_cmd.add_arguments(parser)
    rc = predict_cmd.run(parser.parse_args([in_dir, out_dir, "--model", model]))
    print(json.dumps({
        "blocked": blocked,
        "torch_loaded": any(m.split(".")[0] == "torch" for m in sys.modules),
        "shape": list(pred.weights.shape),
        "row_sum_err": float(np.abs(pred.weights.sum(axis=1) - 1).max()),
        "max_nonzero": int(np.count_nonzero(pred.weights, axis=1).max()),
        "geo_shape": list(geo.weights.shape),
        "provider": pred.provider,
        "predict_rc": rc,
    }))
""")


def test_runtime_imports_and_predicts_without_torch(tmp_path):
    model = tmp_path / "m.onnx"
    export_random_generator(model, hidden=16, fused=16, feature_config=FeatureConfig(k_bones=4, distance="euclidean"))
    rig = make_capsule_chain(3)
    in_dir = tmp_path / "in"
    save_npz(rig, in_dir / "r.npz")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), str(in_dir / "r.npz"), str(in_dir), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["blocked"] is True and res["torch_loaded"] is False
    assert res["shape"] == [rig.num_vertices, 3] and res["geo_shape"] == [rig.num_vertices, 3]
    assert res["row_sum_err"] < 1e-5 and res["max_nonzero"] <= 3
    assert res["provider"] == "CPUExecutionProvider" and res["predict_rc"] == 0
    with np.load(tmp_path / "out" / "r.npz") as f:
        assert f["weights"].shape == (rig.num_vertices, 3)
