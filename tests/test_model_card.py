"""model-card: aggregates are the means of the evaluation rows; files are written."""
import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from backend.cli import model_card
from backend.evaluation.blend import BlendSummary
from backend.export.metadata import set_metadata
from backend.inference.model_store import file_sha256
from backend.rig import RigError
from conftest import export_tiny_model


def rows():
    return [
        {"rig": "a", "kind": "human", "method": "ours", "l1": 0.2, "deform_mean": 0.5, "unweighted": 0, "error": None},
        {"rig": "b", "kind": "animal", "method": "ours", "l1": 0.4, "deform_mean": 1.5, "unweighted": 0, "error": None},
        {"rig": "a", "kind": "human", "method": "boneheat", "l1": 0.6, "deform_mean": 1.0, "unweighted": 3,
         "error": None},
        {"rig": "b", "kind": "animal", "method": "boneheat", "l1": None, "error": "failed"},
    ]


def test_aggregate_means_and_unweighted_rigs(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows()))
    agg = model_card.aggregate(p)
    assert agg["ours"]["rigs"] == 2 and agg["ours"]["l1"] == pytest.approx(0.3)
    assert agg["ours"]["by_kind"]["animal"]["deform_mean"] == pytest.approx(1.5)
    assert agg["boneheat"]["rigs"] == 1 and agg["boneheat"]["unweighted_rigs"] == 1


def card_inputs(tmp_path, seed: int, meta: dict, summary: dict | None = None, piece_share=None):
    """An evaluation folder, a run folder, a tiny model with ``meta`` in its metadata and a two-blend
    sweep: (eval dir, run dir, model path, BlendSummary)."""
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows()))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"hidden": 8}, "run": {"seed": seed}}))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    model = tmp_path / "m.onnx"
    export_tiny_model(model, width=8)
    proto = onnx.load(str(model))
    set_metadata(proto, meta)
    onnx.save_model(proto, str(model))
    blend = BlendSummary(blends=np.array([1.0, 0.5]), means={m: np.array([0.40, 0.41]) for m in
                                                             ("l1", "precision", "recall", "dominant_acc")},
                         l1=np.array([[0.4, 0.41], [0.4, 0.41]]), se=np.array([0.0, 0.02]), best=1.0, chosen=0.5,
                         rigs=["a", "b"], piece_share=piece_share)
    return ev, run, model, blend


def test_card_files_written(tmp_path):
    ev, run, model, blend = card_inputs(tmp_path, 3, {"prior_blend": "0.5"}, {"seconds": 120, "steps": 10})
    check = BlendSummary.from_dict(blend.as_dict())
    check.means = {m: np.array([0.70, 0.60]) for m in check.means}
    (tmp_path / "blend.json").write_text(json.dumps(blend.as_dict() | {"check": check.as_dict(), "check_data": "oos",
                                                                       "rule": "lowest mean"}))
    args = SimpleNamespace(model=str(model), run=str(run), eval=[f"test={ev}"], ablation=None, notes=None,
                           train_command="train it", data_view=None, out=None, blend=str(tmp_path / "blend.json"),
                           earlier_card=None)
    assert model_card.run(args) == 0
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["sha256"] == file_sha256(model) and card["evaluations"]["test"]["aggregate"]["ours"]["rigs"] == 2
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "| `ours` | 2 | 0.300 |" in text and "seed 3" in text
    assert card["prior_blend"] == 0.5 and "prior blend 0.5" in text
    assert card["sharpen"] == 1.0 and "sharpening" not in text  # absent from the metadata: none
    assert card["smooth"] == 0 and "run-time smoothing" not in text
    assert card["diffuse"] == 0.0 and "run-time diffusion" not in text
    assert card["enclosing_pieces"] == 0.0 and "enclosing pieces" not in text
    assert "| 0.50 | 0.410 | +0.010 | 0.020 |" in text and "chosen: 0.5" in text
    assert "rule: lowest mean" in text and "| 0.50 | 0.600 | +0.000 |" in text


def test_card_describes_a_per_rig_blend_rule(tmp_path):
    from backend.inference.blend_rule import PieceBlendRule

    rule = PieceBlendRule(low=0.2, high=1.0, saturation=0.1)
    ev, run, model, blend = card_inputs(tmp_path, 1, {"prior_blend": "0.5",
                                                      "prior_blend_rule": json.dumps(rule.as_dict()),
                                                      "sharpen": "1.4", "smooth": "2", "diffuse": "0.5",
                                                      "enclosing_pieces": "0.25"},
                                        piece_share=np.array([0.0, 0.3]))
    (tmp_path / "blend.json").write_text(json.dumps(blend.as_dict() | {"piece_rule": rule.as_dict(),
                                                                       "piece_rule_l1": [0.37],
                                                                       "fixed_blend_l1": [0.41]}))
    (tmp_path / "grid.md").write_text("GRID TABLE")
    (tmp_path / "runs.md").write_text("RUNS TABLE")
    args = SimpleNamespace(model=str(model), run=str(run), eval=[f"test={ev}"],
                           ablation=[str(tmp_path / "grid.md"), str(tmp_path / "runs.md")], notes=None,
                           train_command=None, data_view=None, out=None, blend=str(tmp_path / "blend.json"),
                           earlier_card=None)
    assert model_card.run(args) == 0
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert PieceBlendRule.from_dict(card["prior_blend_rule"]) == rule
    assert BlendSummary.from_dict(card["blend_sweep"]).piece_share.tolist() == [0.0, 0.3]
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "b = 0.2 for one closed body, rising linearly to 1 when 0.1 of the surface" in text
    assert "`val` 0.370 (fixed blend 0.410)" in text
    assert card["sharpen"] == 1.4 and "raised to the power 1.4" in text
    assert card["smooth"] == 2 and "2 Laplacian iterations" in text
    assert card["diffuse"] == 0.5 and "reach of 0.5 % of the character's bounding-box diagonal" in text
    assert card["enclosing_pieces"] == 0.25 and "each separate piece under 0.25 of the surface" in text
    assert text.index("## Ablation") < text.index("GRID TABLE") < text.index("RUNS TABLE")


def test_card_of_a_model_made_in_two_training_steps(tmp_path):
    ev, run, model, blend = card_inputs(tmp_path, 0, {"prior_blend": "0.5"}, {"seconds": 600, "steps": 100})
    warm = tmp_path / "warm"
    warm.mkdir()
    (warm / "config.json").write_text(json.dumps({"model": {"hidden": 8},
                                                  "run": {"seed": 4, "init_generator": "g.pt"}}))
    (warm / "summary.json").write_text(json.dumps({"seconds": 300, "steps": 40, "best_score": 0.1}))
    args = SimpleNamespace(model=str(model), run=[str(run), str(warm)], eval=[f"test={ev}"], ablation=None, notes=None,
                           train_command=["first", "second --init g.pt"], data_view=None, out=None, blend=None,
                           earlier_card=None)
    assert model_card.run(args) == 0
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["training"]["seconds"] == 900 and card["training"]["steps"] == 140
    assert [s["command"] for s in card["training"]["steps_in_order"]] == ["first", "second --init g.pt"]
    assert card["training"]["steps_in_order"][1]["init_generator"] == "g.pt" and card["config"]["run"]["seed"] == 4
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "15.0 min, 140 steps, seed 4, in 2 steps" in text and "- command: `second --init g.pt`" in text
    with pytest.raises(RigError, match="not a training run folder"):
        model_card.run(SimpleNamespace(**{**vars(args), "run": [str(tmp_path / "nothing")]}))


def test_card_continues_an_earlier_card(tmp_path):
    """--earlier-card: the steps of the model the first run started from come first, with their times."""
    ev, run, model, blend = card_inputs(tmp_path, 0, {"prior_blend": "0.5"}, {"seconds": 600, "steps": 100})
    earlier = tmp_path / "old_card.json"
    earlier.write_text(json.dumps({"training": {"steps_in_order": [
        {"run": "runs/a", "command": "train a", "seconds": 1200, "steps": 50, "best_score": 0.3, "init_generator": ""},
        {"run": "runs/b", "command": "train b --init a.pt", "seconds": 60, "steps": 10, "best_score": 0.2,
         "init_generator": "a.pt"}]}}))
    args = SimpleNamespace(model=str(model), run=[str(run)], eval=[f"test={ev}"], ablation=None, notes=None,
                           train_command=["train c --init b.pt"], data_view=None, out=None, blend=None,
                           earlier_card=str(earlier))
    assert model_card.run(args) == 0
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert [s["command"] for s in card["training"]["steps_in_order"]] == ["train a", "train b --init a.pt",
                                                                        "train c --init b.pt"]
    assert card["training"]["seconds"] == 1860 and card["training"]["steps"] == 160
    assert card["command"] == "train a && train b --init a.pt && train c --init b.pt"
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "31.0 min, 160 steps" in text and "in 3 steps: `runs/a` 20.0 min; `runs/b` 1.0 min" in text
    earlier.write_text(json.dumps({"training": {}}))
    with pytest.raises(RigError, match="not a model card with training steps"):
        model_card.run(args)


def test_card_of_an_ensemble_lists_its_members(tmp_path):
    members = [{"path": "runs/a/best_generator.pt", "sha256": "ab" * 32, "weight": 0.5, "best_score": 0.027},
               {"path": "runs/b/best_generator.pt", "sha256": "cd" * 32, "weight": 0.5, "best_score": 0.028}]
    ev, run, model, blend = card_inputs(tmp_path, 0, {"prior_blend": "0.5",
                                                      "train_summary": json.dumps({"ensemble": members})})
    args = SimpleNamespace(model=str(model), run=[str(run)], eval=[f"test={ev}"], ablation=None, notes=None,
                           train_command=["train it"], data_view=None, out=None, blend=None, earlier_card=None)
    assert model_card.run(args) == 0
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert [m["path"] for m in card["ensemble"]] == ["runs/a/best_generator.pt", "runs/b/best_generator.pt"]
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert ("an ensemble of 2 generators" in text
            and "`runs/b/best_generator.pt` (share 0.5, sha256 `cdcdcdcdcdcd…`)" in text)
    # a single generator's card says nothing of members
    (tmp_path / "single").mkdir()
    ev2, run2, model2, _ = card_inputs(tmp_path / "single", 0, {"prior_blend": "0.5"})
    assert model_card.run(SimpleNamespace(**{**vars(args), "model": str(model2), "run": [str(run2)],
                                             "eval": [f"test={ev2}"]})) == 0
    single = json.loads((tmp_path / "single" / "model_card.json").read_text())
    assert single["ensemble"] is None and "an ensemble of" not in (tmp_path / "single" / "MODEL_CARD.md").read_text()
