"""The evaluate runner and command on generated rigs: rows, summary, kinds, broken files, resume, pictures."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from backend.__main__ import main
from backend.evaluation import baselines
from backend.evaluation.runner import EvalConfig, find_manifest, load_manifest_kinds, run_evaluation
from backend.io.npz import save_npz
from tests.conftest import make_capsule_chain

FAST = EvalConfig(num_poses=2)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "rigs" / "test"
    d.mkdir(parents=True)
    save_npz(make_capsule_chain(2, name="a"), d / "a_chain2.npz")
    save_npz(make_capsule_chain(3, segments=8, rings=12, name="b"), d / "b_chain3.npz")
    (d / "c_broken.npz").write_bytes(b"not a zip file")
    save_npz(make_capsule_chain(2, with_weights=False), d / "d_noweights.npz")
    rows = [{"file": "a_chain2.npz", "kind": "human"}, {"file": "b_chain3.npz", "kind": "animal"}]
    (tmp_path / "data" / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_manifest_is_found_two_folders_up(data_dir: Path):
    m = find_manifest(data_dir)
    assert m == data_dir.parent.parent / "manifest.jsonl"
    assert load_manifest_kinds(m) == {"a_chain2.npz": "human", "b_chain3.npz": "animal"}


def test_evaluate_command_writes_rows_summary_and_reports_broken(data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", str(data_dir), "--methods", "nearest,envelope", "--out", str(out),
               "--poses", "2", "--no-progress"])
    assert rc == 0
    rows = _rows(out)
    good = [r for r in rows if r["method"]]
    assert sorted((r["rig"], r["method"]) for r in good) == [
        ("a_chain2.npz", "envelope"), ("a_chain2.npz", "nearest"),
        ("b_chain3.npz", "envelope"), ("b_chain3.npz", "nearest")]
    assert {r["kind"] for r in good} == {"human", "animal"}
    broken = {r["rig"]: r["error"] for r in rows if not r["method"]}
    assert set(broken) == {"c_broken.npz", "d_noweights.npz"}
    assert "c_broken.npz" in broken["c_broken.npz"] and "no ground-truth weights" in broken["d_noweights.npz"]
    with open(out / "results.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 4 and "deform_mean" in csv_rows[0]
    summary = (out / "summary.md").read_text()
    assert "## kind: human (1 rigs)" in summary and "## kind: animal (1 rigs)" in summary
    assert "broken file c_broken.npz" in summary
    # the summary holds the mean over rigs of the per-rig rows
    l1 = np.mean([r["l1"] for r in good if r["method"] == "nearest"])
    line = next(s for s in summary.splitlines() if s.startswith("| `nearest` | 2 |"))
    assert line.split("|")[3].strip() == f"{l1:.3f}"
    # on capsule chains with tent weights the envelope beats hard nearest-bone weights
    by = {(r["rig"], r["method"]): r for r in good}
    for rig in ("a_chain2.npz", "b_chain3.npz"):
        assert by[(rig, "envelope")]["l1"] < by[(rig, "nearest")]["l1"]
        assert by[(rig, "envelope")]["deform_mean"] < by[(rig, "nearest")]["deform_mean"]


def test_failures_unweighted_resume_and_interrupt(data_dir: Path, tmp_path: Path):
    calls: list[str] = []

    def half_empty(rig):
        calls.append(rig.name)
        if rig.num_bones == 3:
            raise ValueError("boom")
        w = baselines.nearest_bone_weights(rig)
        w[:5] = 0.0  # five vertices left unweighted, like a silent bone-heat failure
        return w, {"note": 1}

    methods = [("nearest", baselines.nearest_bone_weights), ("half", half_empty)]
    files = sorted(data_dir.glob("*.npz"))
    out = tmp_path / "out"
    res = run_evaluation(files, methods, out, config=FAST, progress=False)
    half = {r["rig"]: r for r in res.rows if r["method"] == "half"}
    assert half["a_chain2.npz"]["unweighted"] == 5 and half["a_chain2.npz"]["note"] == 1
    assert "ValueError: boom" in half["b_chain3.npz"]["error"]
    summary = (out / "summary.md").read_text()
    assert "| `half` | 1 (+1 failed) |" in summary and summary.rstrip().count("5 (1)") >= 1
    assert "b_chain3.npz / half: ValueError: boom" in summary
    # resume: nothing done is recomputed, the failed pair is retried
    calls.clear()
    res2 = run_evaluation(files, methods, out, config=FAST, resume=True, progress=False)
    assert calls == [str(data_dir / "b_chain3.npz")]
    assert len([r for r in res2.rows if not r.get("error")]) == 3

    def interrupting(rig):
        if rig.num_bones == 3:
            raise KeyboardInterrupt
        return baselines.nearest_bone_weights(rig)

    out3 = tmp_path / "out3"
    res3 = run_evaluation(files, [("stop", interrupting)], out3, config=FAST, progress=False)
    assert res3.interrupted
    assert [r["rig"] for r in _rows(out3)] == ["a_chain2.npz"]  # what was done is kept
    assert "Interrupted" in (out3 / "summary.md").read_text()


def test_registry_plugs_in_new_methods_and_refuses_unknown(data_dir: Path, tmp_path: Path, capsys):
    @baselines.register("uniform_test")
    def _uniform(arg):
        def fn(rig):
            w = np.zeros((rig.num_vertices, rig.num_bones), np.float32)
            w[:, rig.deform_indices] = 1.0 / len(rig.deform_indices)
            return w
        return fn

    label, fn = baselines.make_method("uniform_test")
    assert label == "uniform_test"
    rc = main(["evaluate", str(data_dir / "a_chain2.npz"), "--methods", "uniform_test,envelope:0.05",
               "--out", str(tmp_path / "o"), "--poses", "1", "--no-progress"])
    assert rc == 0
    methods = {r["method"] for r in _rows(tmp_path / "o")}
    assert methods == {"uniform_test", "envelope:0.05"}
    assert main(["evaluate", str(data_dir), "--methods", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["evaluate", str(data_dir), "--methods", "model:missing.onnx", "--out", str(tmp_path / "x")]) == 2
    assert "missing.onnx: no such file" in capsys.readouterr().err


def test_boneheat_missing_module_is_named():
    try:
        import backend.blender.boneheat  # noqa: F401
    except ImportError:
        with pytest.raises(baselines.MethodUnavailable, match="boneheat.py"):
            baselines.make_method("boneheat")
    else:
        assert callable(baselines.make_method("boneheat")[1])


def test_pictures_for_first_rig(data_dir: Path, tmp_path: Path):
    import matplotlib.image as mpimg

    out = tmp_path / "out"
    rc = main(["evaluate", str(data_dir), "--methods", "nearest,envelope", "--out", str(out),
               "--poses", "1", "--pictures", "1", "--no-progress"])
    assert rc == 0
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["a_chain2_poses.png", "a_chain2_weights.png"]
    img = mpimg.imread(out / "figures" / "a_chain2_weights.png")
    # 3 columns (truth, nearest, envelope) wider than tall-ish panels; not a blank canvas
    assert img.shape[1] > 600 and img[..., :3].std() > 0.05


def test_model_method_runs_through_the_predictor(data_dir: Path, tmp_path: Path, monkeypatch):
    import sys
    import types

    seen = []

    class FakePredictor:  # stands in for backend.inference.predictor.Predictor
        def __init__(self, path, skip_helpers=True, rigid_pieces=False):
            seen.append((Path(path).name, skip_helpers, rigid_pieces))

        def predict(self, rig):
            assert rig.weights is None  # methods never see the ground truth
            return types.SimpleNamespace(weights=baselines.nearest_bone_weights(rig))

    fake = types.ModuleType("backend.inference.predictor")
    fake.Predictor = FakePredictor
    monkeypatch.setitem(sys.modules, "backend.inference.predictor", fake)
    model = tmp_path / "gen_v1.onnx"
    model.write_bytes(b"onnx")
    out = tmp_path / "o"
    assert main(["evaluate", str(data_dir / "a_chain2.npz"), "--methods",
                 f"model:{model},model-rigid:{model},model-all-bones:{model},nearest",
                 "--out", str(out), "--poses", "1", "--no-progress"]) == 0
    rows = {r["method"]: r for r in _rows(out)}
    assert seen == [("gen_v1.onnx", True, False), ("gen_v1.onnx", True, True), ("gen_v1.onnx", False, False)]
    assert set(rows) == {"model:gen_v1", "model-rigid:gen_v1", "model-all-bones:gen_v1", "nearest"}
    assert rows["model:gen_v1"]["l1"] == pytest.approx(rows["nearest"]["l1"])
    with pytest.raises(baselines.MethodUnavailable, match="export"):
        baselines.make_method(f"model:{data_dir / 'a_chain2.npz'}")
