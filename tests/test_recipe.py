"""The one-command recipe: view, unlabelled pool, training, export, test evaluation, card, install."""
from __future__ import annotations

import json

import pytest

from conftest import make_tiny_recipe


@pytest.mark.slow
def test_recipe_trains_on_every_domain_and_cards_the_licences(tmp_path):
    from backend.__main__ import main

    data, folds, cfg = make_tiny_recipe(tmp_path, '[features]\ndistance = "euclidean"\nk_bones = 3\n'
                                                  '[runtime]\nprior_blend = 0.9\n')
    out, models = tmp_path / "recipe", tmp_path / "models"
    models.mkdir()
    (models / "autoskin.onnx").write_bytes(b"old model")
    args = ["recipe", "--config", str(cfg), "--data", str(data), "--folds", str(folds),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--model-version", "9.9",
            "--install", str(models)]
    cv = tmp_path / "cv"  # a cv folder: the card quotes its headline table, not the per-domain tables
    cv.mkdir()
    (cv / "cv.md").write_text("| domain | rigs |\n|---|---|\n| dom_zz | 9 |\n")
    assert main(args + ["--cv", str(cv)]) == 2  # no cv_headline.md: refused before any work
    assert not out.exists()
    (cv / "cv_headline.md").write_text("| method | rigs |\n|---|---|\n| `candidate` | 7 |\n")
    assert main(args + ["--cv", str(cv)]) == 0
    assert sorted(p.name for p in (out / "view" / "train").iterdir()) == [
        "dom_a0.npz", "dom_a1.npz", "dom_b0.npz", "train0.npz", "train1.npz", "train2.npz"]
    log = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    start = next(r for r in log if r["kind"] == "start")
    assert start["labeled"] == 6 and start["unlabeled"] == 2
    card = json.loads((models / "model_card.json").read_text())
    assert card["prior_blend"] == 0.9 and card["data_view"]["train_license_classes"] == {
        "noncommercial": 1, "permissive": 3, "sharealike": 2}
    assert set(card["evaluations"]["test"]["aggregate"]) == {"model:autoskin", "heat:skip_helpers=1", "geodesic",
                                                            "boneheat:fill"}
    md = (models / "MODEL_CARD.md").read_text()
    assert "noncommercial (1 rigs)" in md and "python -m backend recipe" in md
    assert "| `candidate` | 7 |" in md and "dom_zz" not in md
    assert (models / "autoskin.onnx").read_bytes() == (out / "autoskin.onnx").read_bytes()
    assert (models / "autoskin.pth").read_bytes() == (out / "run" / "best_generator.pt").read_bytes()
    assert sorted(p.name for p in models.iterdir()) == [  # nothing half-copied left beside them
        "MODEL_CARD.md", "autoskin.onnx", "autoskin.pth", "model_card.json"]
