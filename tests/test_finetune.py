"""Fine-tuning on artists' corrections: loss, schedule, models folder, resume, the validation gate,
and the whole loop through the add-on in real Blender (tiny generators, generated capsule rigs)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.__main__ import main
from backend.export.onnx_export import export_generator
from backend.features.pipeline import FeatureConfig
from backend.inference import model_store
from backend.io.npz import save_npz
from backend.rig import RigError
from backend.models.checkpoint import load_generator_checkpoint
from backend.training.config import load_config
from backend.training.corrections import read_corrections
from backend.training.finetune import (Finetuner, FinetuneOptions, epoch_plan, replay_batch_count, run_finetune,
                                       weighted_supervised_loss)
from backend.training.losses import supervised_loss
from conftest import make_capsule_chain, rewrite_meta

FC = FeatureConfig(k_bones=3, distance="euclidean")
SMALL = dict(rings=12, segments=10)


def chain(n: int, radius: float, name: str):
    return make_capsule_chain(n, radius=radius, name=name, **SMALL)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder with train/ and val/ capsule chains, a tiny generator briefly trained on it by the
    real trainer: best_generator.pt)."""
    from backend.training.trainer import Trainer

    root = tmp_path_factory.mktemp("pretrained")
    for split, specs in {"train": [(3, .3), (4, .25), (3, .35), (5, .3)], "val": [(3, .28), (4, .32)]}.items():
        for i, (n, r) in enumerate(specs):
            save_npz(chain(n, r, f"{split}{i}"), root / "data" / split / f"{split}{i}.npz")
    cfg = load_config(None, ["model.hidden=16", "model.fused=16", "model.critic_hidden=8", "features.k_bones=3",
                             'features.distance="euclidean"', "stages.stage1_epochs=40", "stages.stage2_epochs=0",
                             "stages.stage3_epochs=0", "stages.stage1_mse=0.0", "optim.lr_g=3e-3",
                             "optim.warmup_steps=3", "run.threads=1", f'data.cache_dir="{root / "cache"}"'])
    Trainer(cfg, root / "data", root / "run", progress=False, tensorboard=False, plots=False).fit()
    return root / "data", root / "run" / "best_generator.pt"


@pytest.fixture
def data_dir(pretrained) -> Path:
    return pretrained[0]


@pytest.fixture
def base_models(pretrained):
    """Factory: ``base_models(folder, onnx=True)`` puts the pretrained generator in ``folder`` as the
    shipped model (autoskin.pth + autoskin.onnx)."""

    def make(folder: Path, onnx: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(pretrained[1], folder / "autoskin.pth")
        if onnx:
            G, _ = load_generator_checkpoint(folder / "autoskin.pth")
            export_generator(G, folder / "autoskin.onnx", FC, method="torchscript")

    return make


def config(tmp_path: Path, *extra: str):
    return load_config(None, ["optim.lr_g=3e-3", "run.threads=1", f'data.cache_dir="{tmp_path / "cache"}"', *extra])


def tip_to_bone2(rig, pred: np.ndarray, z0: float) -> np.ndarray:
    """The artist's edit: every vertex above ``z0`` moved entirely onto bone_2."""
    w = pred.copy()
    tip = rig.vertices[:, 2] > z0
    w[tip] = 0.0
    w[tip, 2] = 1.0
    return w


# ----------------------------------------------------------------------------- pure parts
def test_weighted_loss_known_values():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 3, generator=g, dtype=torch.float64)
    pred = pred / pred.sum(1, keepdim=True)
    target = torch.rand(6, 3, generator=g, dtype=torch.float64)
    target = target / target.sum(1, keepdim=True)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[0, 2] = False
    valid = torch.tensor([True, True, True, True, True, False])
    ones = torch.ones(6, dtype=torch.float64)
    for a, b in zip(weighted_supervised_loss(pred, target, mask, valid, ones, 0.1),
                    supervised_loss(pred, target, mask, valid, 0.1)):
        assert float(a) == pytest.approx(float(b), rel=1e-12)
    # weight 5 on row 1: mse = sum_v r_v sum_k m (p - t)^2 / sum_v r_v |m_v|
    rw = torch.tensor([1.0, 5.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    _, mse, _ = weighted_supervised_loss(pred, target, mask, valid, rw)
    m = (mask & valid[:, None]).double()
    sq = (((pred * mask) - target) ** 2 * m).sum(1)
    r = rw * valid.double()
    assert float(mse) == pytest.approx(float((r * sq).sum() / (r * m.sum(1)).sum()), rel=1e-6)


def test_epoch_plan_mixes_replay_by_share():
    assert replay_batch_count(4, 0.5) == 4 and replay_batch_count(4, 0.0) == 0 and replay_batch_count(2, 0.75) == 6
    with pytest.raises(RigError, match="replay-share"):
        replay_batch_count(1, 1.0)
    plan = epoch_plan([100, 100, 100], [50] * 10, budget=100, share=0.5, seed=0, epoch=0)
    kinds = [k for k, _ in plan]
    assert kinds.count("c") == 3 and kinds.count("r") == 3
    assert sorted(i for k, b in plan if k == "c" for i in b) == [0, 1, 2]
    assert all(sum(50 for _ in b) <= 100 for k, b in plan if k == "r")
    assert plan == epoch_plan([100, 100, 100], [50] * 10, 100, 0.5, 0, 0)  # deterministic
    assert [k for k, _ in epoch_plan([100], [], 100, 0.5, 0, 0)] == ["c"]  # no train data: corrections only


def test_model_store_versions(tmp_path):
    folder = tmp_path / "models"
    assert model_store.list_models(folder) == [] and model_store.next_version(folder) == 1
    folder.mkdir()
    for n, body in ((1, b"one"), (3, b"three")):
        p = model_store.version_paths(folder, n)
        p["onnx"].write_bytes(body)
        model_store.write_json_atomic(p["json"], {"onnx_sha256": model_store.file_sha256(p["onnx"]),
                                                  "created": "2025-01-02T00:00:00", "corrections": [{}, {}]})
    model_store.version_paths(folder, 3)["pth"].write_bytes(b"ckpt3")
    model_store.version_paths(folder, 4)["onnx"].write_bytes(b"partial")  # no card: incomplete
    model_store.version_paths(folder, 2)["onnx"].write_bytes(b"two")
    model_store.version_paths(folder, 2)["json"].write_text("{broken")  # unreadable card
    assert [m.version for m in model_store.list_models(folder)] == [1, 3]
    newest = model_store.newest_model(folder)
    assert newest.version == 3 and newest.checkpoint.name == "autoskin-v3.pth"
    assert newest.label == "v3 (2025-01-02, 2 corrections)"
    assert model_store.next_version(folder) == 5  # never reuses the partial v4's name
    assert model_store.current_model(folder) is None
    with pytest.raises(RigError, match="pass --base"):
        model_store.current_checkpoint(folder)
    with pytest.raises(RigError, match=r"no complete model version v4 \(versions: v1, v3\)"):
        model_store.get_model(folder, 4)
    model_store.activate(folder, 3)
    assert (folder / "autoskin.onnx").read_bytes() == b"three" and (folder / "autoskin.pth").read_bytes() == b"ckpt3"
    assert model_store.current_model(folder).version == 3
    assert model_store.current_checkpoint(folder).name == "autoskin-v3.pth"
    model_store.activate(folder, 1)  # v1 has no checkpoint: autoskin.pth stays, the card decides
    assert model_store.current_model(folder).version == 1
    assert model_store.current_checkpoint(folder).name == "autoskin.pth"
    # an unknown model in use is kept as a version before anything replaces it
    (folder / "autoskin.onnx").write_bytes(b"shipped")
    kept = model_store.register_current(folder)
    assert kept.version == 5 and kept.onnx.read_bytes() == b"shipped" and kept.checkpoint.read_bytes() == b"ckpt3"
    assert model_store.register_current(folder).version == 5  # idempotent
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_resume_gives_the_uninterrupted_result(tmp_path, data_dir, base_models):
    base_models(tmp_path / "models", onnx=False)
    rig = chain(3, .3, "c")
    save_npz(rig.with_weights(tip_to_bone2(rig, rig.weights, 1.8)), tmp_path / "corr" / "c.npz",
             predicted_weights=rig.weights)
    corr = read_corrections(tmp_path / "corr")

    def trainer(kill: int, out: str) -> Finetuner:
        opts = FinetuneOptions(epochs=3, kill_after_steps=kill)
        return Finetuner(config(tmp_path), tmp_path / "models" / "autoskin.pth", corr, data_dir, tmp_path / out, opts,
                         progress=False)

    full, info = trainer(0, "a").train(corr.accepted, tmp_path / "a" / "state.pt")
    assert info["steps"] == 6 and not info["interrupted"]  # 3 epochs x (1 correction + 1 replay batch)
    t = trainer(4, "b")
    _, info = t.train(corr.accepted, tmp_path / "b" / "state.pt")
    assert info["interrupted"] and info["steps"] == 4
    resumed, info = trainer(0, "b").train(corr.accepted, tmp_path / "b" / "state.pt", resume=True)
    assert info["steps"] == 6
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # a state made for other options is refused
    with pytest.raises(RigError, match="another fine-tuning run"):
        Finetuner(config(tmp_path), tmp_path / "models" / "autoskin.pth", corr, data_dir, tmp_path / "b",
                  FinetuneOptions(epochs=4), progress=False).train(corr.accepted, tmp_path / "b" / "state.pt",
                                                                   resume=True)


def contradicting_correction(folder: Path) -> Path:
    """An 'artist' style that contradicts the validation rigs: the middle bone's region of a chain
    given to the first bone (``folder/a.npz``)."""
    rig = chain(3, .3, "c")
    z = rig.vertices[:, 2]
    w = rig.weights.copy()
    mid = (z > 1.0) & (z < 2.0)
    w[mid] = 0.0
    w[mid, 0] = 1.0
    save_npz(rig.with_weights(w), folder / "a.npz", predicted_weights=rig.weights)
    return folder / "a.npz"


def test_the_gate_scores_the_weights_the_runtime_gives(tmp_path, pretrained):
    """The gate's figures are `evaluate`'s metrics of the Predictor's output under the run-time settings
    of the model in use (blend or per-rig rule, geodesic share, smoothing, diffusion, sharpening), not
    of the raw generator output."""
    from backend.evaluation.metrics import l1_per_vertex, restrict
    from backend.evaluation.runner import evaluate_weights
    from backend.inference.blend_rule import PieceBlendRule
    from backend.inference.predictor import Predictor
    from backend.training.adapt import torch_net
    from backend.training.data import FeatureStore
    from backend.training.finetune import runtime_score
    from backend.training.publish import settings_in_use
    from backend.training.runtime_score import EvalRig

    G, _ = load_generator_checkpoint(pretrained[1])
    rig = chain(4, .3, "r")
    save_npz(rig, tmp_path / "r.npz")
    feats = FeatureStore(tmp_path / "cache", FC, skip_helpers=True).sample(tmp_path / "r.npz").features()
    t, p, _ = restrict(rig.weights, feats.to_dense(torch_net(G)(feats)), rig.is_deform)
    raw = l1_per_vertex(t, p)
    rule = PieceBlendRule(low=0.15, high=1.0, saturation=0.1).as_dict()
    for i, stored in enumerate([dict(prior_blend=0.6, sharpen=3.0, smooth=1, diffuse=0.5, geodesic_share=0.25),
                                dict(prior_blend_rule=rule, sharpen=2.0)]):
        models = tmp_path / f"models{i}"  # a new file per case: the runtime caches sessions by path
        export_generator(G, models / "autoskin.onnx", FC, method="torchscript", **stored)
        settings = settings_in_use(models)
        assert {k: v for k, v in settings.stored_values().items() if k in stored} == stored
        got = runtime_score(G, [EvalRig("r", rig, feats)], settings)
        want = evaluate_weights(rig, Predictor(models / "autoskin.onnx", threads=1).predict(rig).weights)
        assert got["rigs"] == 1
        assert got["l1"] == pytest.approx(want["l1"], abs=1e-4), stored
        assert got["deform_mean"] == pytest.approx(want["deform_mean"], abs=1e-3), stored
        assert abs(got["l1"] - raw) > 0.01  # the post-processing moves the figure


def test_the_gate_judges_the_runtime_weights_not_the_raw_output(tmp_path, data_dir, base_models):
    """With a model in use whose runtime ignores the network (prior blend 0), fine-tuning on a
    correction that makes the raw output worse on validation changes nothing users get: the gate sees
    no change and accepts, where the raw output's L1 rose by more than the tolerance."""
    from backend.evaluation.metrics import l1_per_vertex, restrict
    from backend.io.npz import load_npz
    from backend.training.adapt import torch_net
    from backend.training.data import FeatureStore

    models = tmp_path / "models"
    base_models(models)
    rewrite_meta(models / "autoskin.onnx", models / "autoskin.onnx", prior_blend="0.0")
    contradicting_correction(tmp_path / "corr")
    run = tmp_path / "run"
    result = run_finetune(config(tmp_path), read_corrections(tmp_path / "corr"), data_dir, run, models,
                          options=FinetuneOptions(epochs=20), dry_run=True, progress=False)
    assert result.decision == "evaluated", result.message
    assert result.metrics["val_delta"] == 0.0 and result.metrics["val_old"]["rigs"] == 2
    report = json.loads((run / "report.json").read_text())
    assert report["runtime_settings"]["prior_blend"] == 0.0 and report["decision"] == "evaluated"
    store = FeatureStore(tmp_path / "cache", FC, skip_helpers=True)

    def raw_val_l1(G) -> float:
        out = []
        for path in sorted((data_dir / "val").glob("*.npz")):
            rig, feats = load_npz(path), store.sample(path).features()
            t, p, _ = restrict(rig.weights, feats.to_dense(torch_net(G)(feats)), rig.is_deform)
            out.append(l1_per_vertex(t, p))
        return float(np.mean(out))

    old, new = (load_generator_checkpoint(p)[0] for p in (models / "autoskin.pth", run / "finetuned_generator.pt"))
    assert raw_val_l1(new) - raw_val_l1(old) > 0.02  # the raw scorer would have refused it


def test_refuses_a_model_worse_on_validation(tmp_path, data_dir, base_models, capsys):
    """An 'artist' style that contradicts the validation rigs: the gate refuses and says by how much;
    broken and duplicate files are reported and skipped."""
    models = tmp_path / "models"
    base_models(models)
    before = sorted(p.name for p in models.iterdir())
    corr = tmp_path / "corr"
    contradicting_correction(corr)
    shutil.copy(corr / "a.npz", corr / "b_duplicate.npz")
    (corr / "c_broken.npz").write_bytes((corr / "a.npz").read_bytes()[:100])
    code = main(["finetune", "--corrections", str(corr), "--data", str(data_dir), "--models", str(models),
                 "--out", str(tmp_path / "run"), "--epochs", "20", "--no-progress",
                 "--set", "optim.lr_g=3e-3", "--set", f'data.cache_dir="{tmp_path / "cache"}"'])
    out = capsys.readouterr().out
    assert code == 3
    assert "1 correction(s) accepted, 1 refused, 1 duplicate(s) skipped" in out
    assert "bad  c_broken.npz" in out and "dup  b_duplicate.npz: same rig and weights as a.npz" in out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    delta = report["metrics"]["val_delta"]
    assert report["decision"] == "refused" and delta > 0.02
    assert f"worse on validation by {delta:.4f}" in out
    assert sorted(p.name for p in models.iterdir()) == before  # nothing published


# ----------------------------------------------------------------------------- the whole loop in Blender
def test_learn_from_a_correction_made_in_blender(tmp_path, data_dir, base_models):
    bpy = pytest.importorskip("bpy")
    import build_addon
    from backend.blender.scene import build_objects
    from backend.inference.predictor import Predictor

    # the add-on, installed from its zip as in tests/test_addon.py
    zip_path = build_addon.build_platform("linux-x64", tmp_path / "dist", wheels=False, model=False).zip_path
    assert bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(zip_path),
                                                    enable_on_install=True, overwrite=True) == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True)
    models = tmp_path / "models"
    base_models(models)
    shipped = (models / "autoskin.onnx").read_bytes()

    # predict in Blender with the model in use, then correct as an artist: the tip region onto bone_2
    rig = chain(3, .3, "hero")
    mesh, arm = build_objects(rig, with_weights=False)
    mesh.modifiers.clear()
    mesh.parent = None
    for g in list(mesh.vertex_groups):
        mesh.vertex_groups.remove(g)
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    mesh.select_set(True)
    arm.select_set(True)
    bpy.context.view_layer.objects.active = arm
    bpy.context.view_layer.update()
    assert bpy.ops.autoskin.auto_skin(mode="LEARNED", model_path=str(models / "autoskin.onnx"), device="CPU",
                                      max_influences=4) == {"FINISHED"}
    # the model's hard bone_1 | bone_2 boundary is blended over the joint by the artist
    z = rig.vertices[:, 2]
    joint = np.flatnonzero((z > 1.7) & (z < 2.3))
    mesh.vertex_groups["bone_0"].remove(joint.tolist())
    for v in joint:
        t = float(z[v] - 1.7) / 0.6
        mesh.vertex_groups["bone_1"].add([int(v)], 1.0 - t, "REPLACE")
        mesh.vertex_groups["bone_2"].add([int(v)], t, "REPLACE")
    corr = tmp_path / "corrections"
    assert bpy.ops.autoskin.export_corrections(directory=str(corr)) == {"FINISHED"}
    assert bpy.ops.autoskin.export_corrections(directory=str(corr)) == {"FINISHED"}  # the same twice

    found = read_corrections(corr)
    assert len(found.accepted) == 1 and len(found.duplicates) == 1
    c = found.accepted[0]
    assert c.predicted is not None and c.num_changed > 15
    assert set(np.flatnonzero(c.changed)) <= set(joint.tolist())
    corrected = c.rig.weights

    def errors(model_path: Path) -> tuple[float, float]:
        w = Predictor(model_path, device="cpu", threads=1).predict(rig, max_influences=0, prune=0.0).weights
        d = np.abs(w - corrected).sum(1)
        return float(d.mean()), float(d[c.changed].mean())

    old_all, old_changed = errors(models / "autoskin.onnx")
    result = run_finetune(config(tmp_path), found, data_dir, tmp_path / "run", models,
                          options=FinetuneOptions(epochs=30, export_method="torchscript"), progress=False)
    assert result.decision == "published", result.message
    assert result.version == 1
    assert result.metrics["val_delta"] <= 0.02
    # the shipped model was kept as v0, v1 is in use, the card names the correction
    versions = model_store.list_models(models)
    assert [m.version for m in versions] == [0, 1] and model_store.newest_model(models).version == 1
    assert versions[0].onnx.read_bytes() == shipped
    assert model_store.current_model(models).version == 1
    card = json.loads((models / "autoskin-v1.json").read_text())
    assert [(e["file"], e["sha256"]) for e in card["corrections"]] == [(c.path.name, c.content_hash)]
    assert card["base"]["checkpoint"] == str(models / "autoskin.pth") and card["model_version"] == "autoskin-v1"
    assert c.path.name in (models / "autoskin-v1.md").read_text()
    new_all, new_changed = errors(models / "autoskin.onnx")
    print(f"Predictor L1 to the corrected weights: all {old_all:.4f} -> {new_all:.4f}, "
          f"changed {old_changed:.4f} -> {new_changed:.4f}")
    assert new_changed < 0.6 * old_changed and new_all < old_all
    # the next fine-tune starts from v1's checkpoint
    assert model_store.current_checkpoint(models) == models / "autoskin-v1.pth"


def test_fine_tuning_keeps_a_grown_generator(tmp_path, data_dir, pretrained):
    """The shipped generator is grown (candidate attention, context layers, models 2.0 / 2.1): fine-tuning
    rebuilds it from the checkpoint's own config and trains the growth layers too."""
    from backend.models.generator import Generator
    from backend.models.checkpoint import save_generator
    from backend.models.checkpoint import warm_start

    _, ckpt = load_generator_checkpoint(pretrained[1])
    kwargs = {**ckpt["config"], "pair_attention": 2, "context_layers": 1}
    G = Generator(**kwargs)
    warm_start(G, pretrained[1], kwargs)
    with torch.no_grad():  # leave the identity start, as a trained grown generator has
        for name, p in G.named_parameters():
            if name.startswith(("attention.", "context.")):
                p.add_(0.01 * torch.randn_like(p))
    save_generator(tmp_path / "models" / "autoskin.pth", G.state_dict(), G.config, ckpt["feature_config"],
                   ckpt["feature_version"], {})
    rig = chain(3, .3, "c")
    save_npz(rig.with_weights(tip_to_bone2(rig, rig.weights, 1.8)), tmp_path / "corr" / "c.npz",
             predicted_weights=rig.weights)
    corr = read_corrections(tmp_path / "corr")
    tuner = Finetuner(config(tmp_path), tmp_path / "models" / "autoskin.pth", corr, data_dir, tmp_path / "ft",
                      FinetuneOptions(epochs=2), progress=False)
    tuned, info = tuner.train(corr.accepted, tmp_path / "ft" / "state.pt")
    assert info["steps"] == 4
    assert tuned.config["pair_attention"] == 2 and tuned.config["context_layers"] == 1
    before = G.state_dict()
    moved = [k for k, v in tuned.state_dict().items() if k.startswith(("attention.", "context."))
             and not torch.equal(v, before[k])]
    assert moved  # the growth layers learn from the correction too


def test_fine_tuning_keeps_an_ensemble(tmp_path, data_dir, pretrained):
    """A shipped model may be an ensemble of generators (`python -m backend ensemble`): fine-tuning
    keeps it one, and every member learns from the correction through the mean's loss."""
    from backend.models.checkpoint import save_generator
    from backend.training.ensemble import ensemble_generators

    G, ckpt = load_generator_checkpoint(pretrained[1])
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_generator(tmp_path / "other.pt", G.state_dict(), G.config, ckpt["feature_config"], ckpt["feature_version"], {})
    base = ensemble_generators([pretrained[1], tmp_path / "other.pt"], tmp_path / "models" / "autoskin.pth")
    before, _ = load_generator_checkpoint(base)
    rig = chain(3, .3, "c")
    save_npz(rig.with_weights(tip_to_bone2(rig, rig.weights, 1.8)), tmp_path / "corr" / "c.npz",
             predicted_weights=rig.weights)
    corr = read_corrections(tmp_path / "corr")
    tuned, info = Finetuner(config(tmp_path), base, corr, data_dir, tmp_path / "ft", FinetuneOptions(epochs=2),
                            progress=False).train(corr.accepted, tmp_path / "ft" / "state.pt")
    assert info["steps"] == 4 and len(tuned.config["members"]) == 2
    old = before.state_dict()
    for i in range(2):
        assert any(not torch.equal(v, old[k]) for k, v in tuned.state_dict().items() if k.startswith(f"members.{i}."))
