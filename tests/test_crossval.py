"""Leave-domain-out folds, domain balance, cross-validated scores and the ``cv`` command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.evaluation.baselines import fill_unweighted
from backend.evaluation.crossval import cv_scores
from backend.features.geodesic import geodesic_weights
from backend.features.pipeline import FeatureConfig, compute_features
from backend.rig import RigError
from backend.training.folds import domain_weights, load_folds, make_folds, plan_fold_view, rig_domain
from conftest import make_capsule_chain, make_tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_folds_are_balanced_by_rig_count_and_hold_every_domain_once():
    sizes = {"big": 50, "a": 10, "b": 9, "c": 8, "d": 7, "e": 3, "f": 1}
    folds = make_folds(sizes, 3)
    assert folds == make_folds(dict(reversed(list(sizes.items()))), 3), "independent of the input order"
    assert sorted(d for f in folds for d in f) == sorted(sizes)
    assert folds[0] == ["big"]
    totals = sorted(sum(sizes[d] for d in f) for f in folds)
    assert totals == [18, 20, 50]  # greedy: a+d+e, b+c+f
    with pytest.raises(RigError, match="cannot fill"):
        make_folds({"a": 1}, 2)


def test_committed_folds_cover_disjoint_domains():
    folds = load_folds(ROOT / "configs" / "folds.json")
    flat = [d for f in folds for d in f]
    assert len(flat) == len(set(flat)) == 21 and len(folds) == 5


def test_load_folds_refuses_a_domain_in_two_folds(tmp_path):
    bad = tmp_path / "f.json"
    bad.write_text(json.dumps({"folds": [["a", "b"], ["b"]]}))
    with pytest.raises(RigError, match="more than one fold: b"):
        load_folds(bad)


def test_rig_domain_counts_every_quaternius_pack_as_one_artist():
    assert rig_domain({"source": "quaternius_fable"}) == rig_domain({"source": "quaternius_b2b"}) == "quaternius"
    assert rig_domain({"source": "makehuman"}) == "makehuman"
    assert rig_domain({"source": "x", "domain": "nssm_mobs"}) == "nssm_mobs"


def test_fold_view_holds_out_whole_domains():
    rigs = [{"file": "t.npz", "split": "train"}, {"file": "v.npz", "split": "val"}, {"file": "s.npz", "split": "test"}]
    styles = [{"file": f"{d}{i}.npz", "domain": d} for d in "abc" for i in range(2)]
    view = plan_fold_view(rigs, styles, [["a"], ["b", "c"]], holdout=1)
    assert sorted(n for _, n in view["heldout"]) == ["b0.npz", "b1.npz", "c0.npz", "c1.npz"]
    assert sorted(n for _, n in view["train"]) == ["a0.npz", "a1.npz", "t.npz"]
    assert view["val"] == [("rigs/val", "v.npz")] and view["test"] == [("rigs/test", "s.npz")]
    everything = plan_fold_view(rigs, styles, [["a"], ["b", "c"]], holdout=None)
    assert len(everything["train"]) == 7 and everything["heldout"] == []
    with pytest.raises(RigError, match="in no fold: c"):
        plan_fold_view(rigs, styles, [["a"], ["b"]], holdout=0)
    with pytest.raises(RigError, match="fold 2 does not exist"):
        plan_fold_view(rigs, styles, [["a"], ["b", "c"]], holdout=2)


def test_domain_weights_known_values():
    names = ["a1", "a2", "a3", "a4", "b1"]
    domains = {n: n[0] for n in names}
    w = domain_weights(names, domains, 0.5)  # a: 4 ** -0.5 = 0.5, b: 1; mean 0.6
    assert np.allclose(w, [0.5 / 0.6] * 4 + [1 / 0.6])
    assert np.allclose(domain_weights(names, domains, 1.0), [0.625] * 4 + [2.5])  # each domain sums to 2.5
    assert domain_weights(names, domains, 0.0) == [1.0] * 5
    with pytest.raises(RigError, match="domain_balance"):
        domain_weights(names, domains, 1.5)


def test_cv_scores_average_domains_not_rigs():
    rows = [{"rig": f"n{i}.npz", "method": "m", "kind": "animal", "l1": 1.0, "deform_mean": 2.0, "dominant_acc": 0.5}
            for i in range(3)]
    rows += [{"rig": "x.npz", "method": "m", "kind": "human", "l1": 0.4, "deform_mean": 1.0, "dominant_acc": 0.9}]
    rows += [{"rig": r["rig"], "method": "other", "kind": r["kind"], "l1": 0.0, "deform_mean": 0.0, "dominant_acc": 1.0}
             for r in rows if r["rig"] != "n2.npz"]
    domains = {"n0.npz": "nssm", "n1.npz": "nssm", "n2.npz": "nssm", "x.npz": "xon"}
    s = cv_scores(rows, domains)
    m = s["m"]
    assert m["rigs"] == 3, "only rigs every method scored"
    assert m["domains"]["nssm"]["rigs"] == 2 and m["domains"]["nssm"]["l1"] == pytest.approx(1.0)
    assert m["domain_mean"]["l1"] == pytest.approx(0.7) and m["rig_mean"]["l1"] == pytest.approx(0.8)
    assert m["kinds"]["human"]["deform_mean"] == pytest.approx(1.0)
    assert s["other"]["domain_mean"]["l1"] == 0.0


def test_fill_unweighted_takes_the_nearest_weighted_vertex(small_rig):
    rig = make_capsule_chain(n_bones=3)
    w = rig.weights.copy()
    top = np.argmax(rig.vertices[:, 2])
    w[top] = 0.0
    filled = fill_unweighted(rig, w)
    others = np.delete(np.arange(rig.num_vertices), top)
    nearest = others[np.argmin(np.linalg.norm(rig.vertices[others] - rig.vertices[top], axis=1))]
    assert np.array_equal(filled[top], w[nearest]) and np.array_equal(np.delete(filled, top, 0), np.delete(w, top, 0))
    assert np.allclose(fill_unweighted(rig, np.zeros_like(w)).sum(axis=1), 1.0)


def test_geodesic_pair_feature_is_the_geodesic_falloff_of_the_candidates():
    rig = make_capsule_chain(n_bones=4, with_weights=False)
    base = FeatureConfig(distance="euclidean", k_bones=3, prior="heat")
    plain = compute_features(rig, base)
    both = compute_features(rig, FeatureConfig(distance="euclidean", k_bones=3, prior="heat", geodesic_pair=True))
    assert both.pair_feat.shape[2] == plain.pair_feat.shape[2] + 1 == base.pair_dim + 1
    assert np.array_equal(both.pair_feat[..., :-1], plain.pair_feat)
    dist = plain.pair_feat[..., 5]  # the candidate distance column
    assert np.allclose(both.pair_feat[..., -1], geodesic_weights(dist), atol=1e-6)
    assert np.allclose(both.pair_feat[..., -1].sum(axis=1), 1.0, atol=1e-5)


def test_runtime_specs_are_parsed_and_range_checked():
    from backend.training.config import RuntimeConfig
    from backend.training.steps import parse_runtime

    assert parse_runtime("s2:sharpen=2,diffuse=0.5") == ("s2", RuntimeConfig(sharpen=2.0, diffuse=0.5))
    assert parse_runtime("net:") == ("net", RuntimeConfig())
    assert parse_runtime("enc:sharpen=3,enclosing_pieces=0.15") == (
        "enc", RuntimeConfig(sharpen=3.0, enclosing_pieces=0.15))
    with pytest.raises(RigError, match="runtime.enclosing_pieces must be"):
        parse_runtime("x:enclosing_pieces=2")
    with pytest.raises(RigError, match="unknown setting 'smooth'"):
        parse_runtime("x:smooth=2")
    with pytest.raises(RigError, match="runtime.prior_blend must be"):
        parse_runtime("x:prior_blend=1.5")
    with pytest.raises(RigError, match="plain NAME"):
        parse_runtime("a/b:sharpen=2")


# ---------------------------------------------------------------- the cv command, end to end
@pytest.mark.slow
def test_cv_command_trains_exports_and_reports_held_out_domains(tmp_path):
    from backend.__main__ import main

    data, folds, cfg = make_tiny_recipe(
        tmp_path, '[features]\ndistance = "euclidean"\nk_bones = 3\ngeodesic_pair = true\n[runtime]\nsharpen = 1.5\n')
    out = tmp_path / "cv"
    args = ["cv", "--config", str(cfg), "--data", str(data), "--folds", str(folds), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--fold", "0", "--baselines", str(tmp_path / "base"),
            "--runtime", "wide:sharpen=1.2,diffuse=1"]
    assert main(args) == 0
    view = out / "views" / "fold0"
    assert sorted(p.name for p in (view / "heldout").iterdir()) == ["dom_a0.npz", "dom_a1.npz"]
    assert sorted(p.name for p in (view / "train").iterdir()) == ["dom_b0.npz", "train0.npz", "train1.npz",
                                                                   "train2.npz"]
    assert json.loads((view / "domains.json").read_text())["train1.npz"] == "quaternius"
    report = json.loads((out / "cv.json").read_text())
    assert report["folds_done"] == [0]
    scores = report["scores"]
    assert set(scores) == {"model:candidate", "model:network", "model:rt-wide", "heat:skip_helpers=1", "geodesic",
                           "boneheat:fill"}
    for s in scores.values():
        assert s["rigs"] == 2 and list(s["domains"]) == ["dom_a"] and 0.0 <= s["domain_mean"]["l1"] <= 2.0
    from backend.inference.model_meta import read_runtime_settings

    cand = read_runtime_settings(_model_metadata(out / "fold0" / "cv_candidate.onnx"), "cand").model_values()
    net = read_runtime_settings(_model_metadata(out / "fold0" / "cv_network.onnx"), "net").model_values()
    wide = read_runtime_settings(_model_metadata(out / "fold0" / "cv_rt-wide.onnx"), "wide").model_values()
    assert (cand["sharpen"], net["sharpen"], net["prior_blend"]) == (1.5, 1.0, 1.0)
    assert (wide["sharpen"], wide["diffuse"], wide["prior_blend"]) == (1.2, 1.0, 1.0)
    assert "dom_a" in (out / "cv.md").read_text()
    headline = (out / "cv_headline.md").read_text()
    assert "| `network alone` | 2 |" in headline and "per domain" not in headline
    # run again: every step is done, nothing is recomputed, the report is the same
    mtime = (out / "fold0" / "best_generator.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "fold0" / "best_generator.pt").stat().st_mtime_ns == mtime
    assert json.loads((out / "cv.json").read_text())["scores"] == scores
    # each stage's best generator, scored on the same held-out rigs: the overall best is one of them
    assert main(args + ["--stage-models"]) == 0
    staged = json.loads((out / "cv.json").read_text())["scores"]
    assert {"model:stage1", "model:final"} <= set(staged) and staged["model:candidate"] == scores["model:candidate"]
    import torch

    from backend.models.checkpoint import load_generator_checkpoint
    from backend.training.checkpoint import load_state

    G, _ = load_generator_checkpoint(out / "fold0" / "final_generator.pt")  # the generator as training ended
    last = load_state(out / "fold0" / "state.pt")["G"]
    assert all(torch.equal(v, last[k]) for k, v in G.state_dict().items())
    # enclosing pieces is a run-time setting like the others: stored, and a change re-exports
    from backend.training.config import RuntimeConfig
    from backend.training.steps import export_is_current

    enc = RuntimeConfig(sharpen=1.2, diffuse=1.0, enclosing_pieces=0.2)
    assert not export_is_current(out / "fold0" / "best_generator.pt", out / "fold0" / "cv_rt-wide.onnx", enc)
    # other run-time settings in the config: the candidate is exported again and scored again
    assert main(args + ["--set", "runtime.sharpen=4"]) == 0
    resharp = json.loads((out / "cv.json").read_text())["scores"]
    cand4 = read_runtime_settings(_model_metadata(out / "fold0" / "cv_candidate.onnx"), "cand").model_values()
    assert cand4["sharpen"] == 4.0 and (out / "fold0" / "best_generator.pt").stat().st_mtime_ns == mtime
    assert resharp["model:candidate"]["domain_mean"] != scores["model:candidate"]["domain_mean"]
    assert resharp["model:rt-wide"] == scores["model:rt-wide"]  # unchanged, not scored again


def _model_metadata(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
