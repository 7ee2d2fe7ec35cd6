"""Choosing the generator/prior blend on weighted rigs (backend.evaluation.blend, blend-sweep)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.evaluation.blend import choose_blend, sweep_blends
from backend.evaluation.metrics import weight_metrics
from backend.features.pipeline import FeatureConfig, compute_features
from backend.inference.postprocess import postprocess
from backend.io.npz import save_npz
from conftest import export_tiny_model, make_capsule_chain

FCFG = FeatureConfig(k_bones=4, distance="euclidean")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("blend_model") / "tiny.onnx", seed=3)


@pytest.fixture(scope="module")
def rig_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("blend_rigs")
    for n in (3, 4, 5):
        save_npz(make_capsule_chain(n), d / f"chain{n}.npz")
    return d


def test_one_standard_error_rule():
    blends = [1.0, 0.5, 0.0]
    # blend 1 best on average; 0.5 worse by 0.01 with a large spread (within one SE); 0 clearly worse
    l1 = np.array([[0.30, 0.27, 0.60], [0.30, 0.35, 0.62], [0.30, 0.31, 0.61], [0.30, 0.31, 0.63]])
    best, chosen, se = choose_blend(blends, l1)
    assert best == 1.0 and chosen == 0.5
    d = l1[:, 1] - l1[:, 0]
    assert se[1] == pytest.approx(d.std(ddof=1) / 2.0) and se[0] == 0.0
    # the same mean gap with no spread is outside one SE: keep the best
    tight = l1.copy()
    tight[:, 1] = 0.31
    assert choose_blend(blends, tight)[1] == 1.0
    with pytest.raises(ValueError, match="rigs"):
        choose_blend(blends, np.zeros((0, 3)))


def test_choice_across_sets_weights_each_set_equally():
    from backend.evaluation.blend import BlendSummary, choose_across

    def summary(l1s):
        return BlendSummary(blends=np.array([1.0, 0.5, 0.0]), means={"l1": np.array(l1s)}, l1=np.zeros((1, 3)),
                            se=np.zeros(3), best=0.0, chosen=0.0, rigs=["r"])

    # in style the model wins, out of style the prior: the middle blend is best on average
    assert choose_across([summary([0.30, 0.33, 0.50]), summary([0.80, 0.62, 0.60])]) == 0.5
    assert choose_across([summary([0.30, 0.33, 0.50])]) == 1.0
    other = summary([0.3, 0.3, 0.3])
    other.blends = np.array([1.0, 0.4, 0.0])
    with pytest.raises(ValueError, match="different blends"):
        choose_across([summary([0.30, 0.33, 0.50]), other])


def test_sweep_scores_the_runtime_mix(model_path, rig_dir):
    files = sorted(rig_dir.glob("*.npz"))
    s = sweep_blends(files, model_path, [0.0, 1.0, 0.5], threads=1)
    assert list(s.blends) == [1.0, 0.5, 0.0] and s.l1.shape == (3, 3) and s.rigs == ["chain3", "chain4", "chain5"]
    # blend 0 is the prior the generator was given, post-processed as at run time
    from backend.io.npz import load_npz

    rig = load_npz(files[1])
    feats = compute_features(rig.without_weights(), FCFG)
    w = postprocess(feats.to_dense(feats.prior), rig.faces, allowed=rig.is_deform)
    assert s.l1[1, 2] == pytest.approx(weight_metrics(rig, w)["l1"], abs=1e-5)
    assert s.chosen in s.blends and s.means["l1"][list(s.blends).index(s.best)] == s.means["l1"].min()


def test_cli_writes_summary_and_refuses_bad_blends(model_path, rig_dir, tmp_path):
    out = tmp_path / "blend.json"
    run = subprocess.run([sys.executable, "-m", "backend", "blend-sweep", str(model_path), str(rig_dir),
                          "--blends", "1,0", "--out", str(out), "--threads", "1",
                          "--check", str(rig_dir / "chain3.npz")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["blends"] == [1.0, 0.0] and len(data["per_rig_l1"]) == 3 and len(data["check"]["per_rig_l1"]) == 1
    avg = (np.array(data["means"]["l1"]) + np.array(data["check"]["means"]["l1"])) / 2
    assert data["chosen"] == data["blends"][int(np.argmin(avg))]
    assert "one-standard-error rule" in run.stdout and "averaged over" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "backend", "blend-sweep", str(model_path), str(rig_dir),
                          "--blends", "1,1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "[0, 1]" in bad.stderr
