"""Adapting a model to a studio's style: the refit settings reproduce the runtime, the fit finds a
painted style and keeps the base without a clear gain, head training, benchmark draws, and the
``adapt`` command publishing through the model store (tiny generators, capsule rigs)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.__main__ import main
from backend.evaluation.adapt_bench import make_draws, read_domains
from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.inference import model_store
from backend.inference.predictor import Predictor
from backend.io.npz import save_npz
from backend.rig import RigError
from backend.training.style import (StyleSettings, fit_style, full_weights, model_settings, onnx_net, pick,
                                    prepare_case, rig_outputs)
from conftest import make_capsule_chain, make_fake_data_root

FC = FeatureConfig(k_bones=3, distance="euclidean")
#: A style far from a random generator's: hard rows from the distance falloff alone.
HARD = StyleSettings(None, 7.0, 0.0, 1.0)


def chain(n: int, radius: float, name: str):
    return make_capsule_chain(n, radius=radius, name=name, rings=12, segments=10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(ONNX model, its checkpoint) of a random tiny generator."""
    from backend.export.onnx_export import export_generator
    from backend.models.generator import Generator
    from backend.models.checkpoint import save_generator

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    G = Generator(hidden=16, fused=16).eval()
    save_generator(root / "autoskin.pth", G.state_dict(), G.config, FC.key_fields(), FEATURE_VERSION, {})
    export_generator(G, root / "autoskin.onnx", FC, method="torchscript")
    return root / "autoskin.onnx", root / "autoskin.pth"


def outputs(predictor, rig, diffuses=(0.0,)):
    return rig_outputs(prepare_case(rig, predictor), onnx_net(predictor), list(diffuses))


def styled(predictor, rig, style: StyleSettings):
    """``rig`` painted in ``style`` (its weights: the runtime's under those settings)."""
    return replace(rig, weights=full_weights(outputs(predictor, rig, [style.diffuse]), style))


def test_settings_reproduce_the_runtime_geodesic_share_included(tiny, tmp_path):
    import onnx

    from backend.export.metadata import get_metadata
    from backend.training.adapt_command import runtime_settings, write_onnx_with_settings

    predictor = Predictor(tiny[0], threads=1)
    rig = chain(3, 0.3, "a")
    ref, _ = model_settings(predictor)
    out = outputs(predictor, rig, (0.0, 0.5))
    assert np.allclose(full_weights(out, ref), predictor.predict(rig).weights, atol=1e-4)
    style = StyleSettings(0.5, 3.0, 0.5, 0.5)
    meta = get_metadata(onnx.load(str(tiny[0])))
    write_onnx_with_settings(tiny[0], tmp_path / "s.onnx", runtime_settings(style, meta), "styled")
    styled_model = Predictor(tmp_path / "s.onnx", threads=1)
    assert styled_model.model.info.settings.geodesic_share == 0.5 and styled_model.model.info.model_version == "styled"
    got = styled_model.predict(rig).weights
    assert np.allclose(got, full_weights(out, style), atol=1e-4)
    assert np.abs(got - predictor.predict(rig).weights).sum(1).mean() > 0.05  # the settings do change it


def test_fit_finds_a_painted_style_and_keeps_the_base_without_gain(tiny):
    predictor = Predictor(tiny[0], threads=1)
    ref, _ = model_settings(predictor)
    rigs = [styled(predictor, chain(n, r, f"r{i}"), HARD) for i, (n, r) in enumerate([(3, .3), (4, .25), (3, .35)])]
    fit = fit_style([outputs(predictor, r, (0.0, 0.5, 1.5)) for r in rigs], ref)
    assert fit.settings.geodesic >= 0.75 and fit.settings.sharpen >= 4.0
    assert fit.cost < 0.5 and fit.loo_cost is not None and fit.loo_cost < 0.5
    # painted as the base paints them: nothing beats the base, the base is kept
    same = [styled(predictor, chain(n, r, f"s{i}"), ref) for i, (n, r) in enumerate([(3, .3), (4, .25)])]
    assert fit_style([outputs(predictor, r, (0.0, 0.5, 1.5)) for r in same], ref).settings == ref


def test_pick_wants_a_large_gain_on_every_correction():
    # (rigs, settings, [L1, deform]); setting 0 is the reference
    table = np.ones((2, 3, 2))
    table[:, 1] = 0.85  # 15 % better on both: too small
    table[0, 2], table[1, 2] = 0.3, 1.05  # 37 % better on average but worse on rig 1
    assert pick(table, 0, [0, 1]) == 0
    table[1, 2] = 0.9
    assert pick(table, 0, [0, 1]) == 2
    assert pick(table, 0, [0, 1], min_gain=0.5) == 0


def test_the_cost_of_a_correction_the_base_gets_right_stays_finite():
    from backend.training.style import COST_FLOOR, relative_cost

    # (rigs, settings, [L1, deform]): rig 0 the base gets almost exactly right, rig 1 it gets wrong
    table = np.array([[[0.001, 0.001], [0.004, 0.003]], [[0.6, 0.8], [0.3, 0.4]]])
    cost = relative_cost(table, 0)
    assert np.allclose(cost[:, 0], 1.0)
    f1, f2 = COST_FLOOR
    assert cost[0, 1] == pytest.approx(((0.004 + f1) / (0.001 + f1) + (0.003 + f2) / (0.001 + f2)) / 2)
    assert 1.0 < cost[0, 1] < 1.1  # a few thousandths worse is a little worse, not 3x
    assert cost[1, 1] == pytest.approx(((0.3 + f1) / (0.6 + f1) + (0.4 + f2) / (0.8 + f2)) / 2)
    assert cost[:, 1].mean() < 1.0  # the real gain on rig 1 decides


def test_head_training_moves_only_the_head_and_fits_the_corrections(tiny):
    from backend.training.adapt import TrainOptions, case_sample, train_head
    from backend.training.finetune import load_base

    predictor = Predictor(tiny[0], threads=1)
    G0, _ = load_base(tiny[1])
    rigs = [styled(predictor, chain(3, .3, "a"), HARD), styled(predictor, chain(4, .25, "b"), HARD)]
    samples = [case_sample(prepare_case(r, predictor)) for r in rigs]
    G, info = train_head(G0, samples, [1.0, 1.0], StyleSettings(None, 1.0, 0.0, 0.0), replay=samples[:1],
                         options=TrainOptions(steps=25, lr=3e-3, replay_every=5))
    assert info["loss_last"] < info["loss_first"] - 0.01 and info["replay_steps"] == 5
    before, after = dict(G0.named_parameters()), dict(G.named_parameters())
    for name, p in after.items():
        moved = not torch.equal(p, before[name])
        assert moved == ("scorer." in name or "prior_gain" in name), name


def test_draws_keep_asset_families_apart():
    groups = ["a", "a", "b", "c", "d"]
    draws = make_draws(groups, [1, 3, 5], draws=3)
    assert {d.k for d in draws} == {1, 3}  # k = 5 leaves nothing to score
    for d in draws:
        assert len(d.corrections) == d.k and d.tests
        assert not {groups[i] for i in d.corrections} & {groups[i] for i in d.tests}
    assert len({tuple(d.corrections) for d in draws if d.k == 1}) > 1  # the draws differ


def test_domains_come_from_the_manifest(tmp_path):
    styles = make_fake_data_root(tmp_path)/ "styles"
    assert list(read_domains(styles, min_rigs=2)) == ["dom_a"]
    with pytest.raises(RigError, match="no domain dom_z"):
        read_domains(styles, 1, ["dom_z"])


def models_and_corrections(tiny, tmp_path: Path) -> tuple[Path, Predictor, Path]:
    """A models folder whose model in use is ``tiny``, a predictor of it, and an empty corrections folder."""
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny[0], models / "autoskin.onnx")
    shutil.copy(tiny[1], models / "autoskin.pth")
    corr = tmp_path / "corr"
    corr.mkdir()
    return models, Predictor(tiny[0], threads=1), corr


def test_adapt_publishes_the_style_as_a_new_version(tiny, tmp_path, capsys):
    models, predictor, corr = models_and_corrections(tiny, tmp_path)
    for i, (n, r) in enumerate([(3, .3), (4, .25)]):
        save_npz(styled(predictor, chain(n, r, f"c{i}"), HARD), corr / f"c{i}.npz")
    args = ["adapt", "--corrections", str(corr), "--models", str(models), "--out", str(tmp_path / "run"),
            "--guard-rigs", "0"]
    assert main(args) == 0
    assert "published" in capsys.readouterr().out
    versions = model_store.list_models(models)
    new = versions[-1]
    assert len(new.card["corrections"]) == 2 and new.card["geodesic_share"] >= 0.75
    assert model_store.current_model(models).version == new.version  # now in use
    in_use = Predictor(models / "autoskin.onnx", threads=1)
    rig = chain(3, 0.28, "other")
    truth = styled(predictor, rig, HARD).weights
    err = lambda w: np.abs(w - truth).sum(1).mean()  # noqa: E731
    assert err(in_use.predict(rig).weights) < 0.5 * err(predictor.predict(rig).weights)


def test_adapt_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["adapt", "--corrections", str(tmp_path / "none"), "--models", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such model file" in err[0]


def test_adapt_train_chooses_its_steps_on_held_out_corrections(tiny, tmp_path):
    import json

    models, predictor, corr = models_and_corrections(tiny, tmp_path)
    soft = StyleSettings(None, 1.0, 0.0, 0.5)  # half falloff: the network still matters
    for i, (n, r) in enumerate([(3, .3), (4, .25)]):
        save_npz(styled(predictor, chain(n, r, f"c{i}"), soft), corr / f"c{i}.npz")
    run = tmp_path / "run"
    code = main(["adapt", "--corrections", str(corr), "--models", str(models), "--out", str(run), "--guard-rigs", "0",
                 "--train", "--steps", "10", "--dry-run"])
    report = json.loads((run / "report.json").read_text())
    held = report["metrics"]["held_out_by_steps"]
    assert set(held) == {"0", "10"} and str(report["metrics"]["steps_chosen"]) in held
    assert report["metrics"]["held_out_cost"] == min(held.values())
    assert code == (3 if report["decision"] == "refused" else 0)
    assert len(model_store.list_models(models)) == 0  # a dry run publishes nothing


def test_adapt_bench_takes_each_domains_base_from_the_cv_fold_that_held_it_out(tiny, tmp_path, capsys):
    import json
    import shutil

    styles = make_fake_data_root(tmp_path) / "styles"
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"folds": [["dom_b"], ["dom_a"]]}))
    cv = tmp_path / "cv"
    (cv / "fold1").mkdir(parents=True)
    (cv / "cv_config.json").write_text(json.dumps({"folds": str(folds)}))
    args = ["adapt-bench", "--styles", str(styles), "--cv", str(cv), "--domains", "dom_a", "--min-rigs", "2",
            "--k", "1", "--draws", "1", "--out", str(tmp_path / "bench")]
    assert main(args) == 2  # fold 1 holds dom_a out, and its model is missing: refused before work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fold1" in err[0] and not (tmp_path / "bench").exists()
    shutil.copy(tiny[0], cv / "fold1" / "cv_candidate.onnx")
    assert main(args) == 0
    rows = [json.loads(x) for x in (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    assert rows and {r["domain"] for r in rows} == {"dom_a"}
    assert {r["base_model"] for r in rows} == {str(cv / "fold1" / "cv_candidate.onnx")}
    same = args[:-1] + [str(tmp_path / "bench2")]
    same[same.index("--cv"):same.index("--cv") + 2] = ["--model", str(tiny[0])]
    assert main(same) == 0  # the fold's model given directly scores the same
    rows2 = [json.loads(x) for x in (tmp_path / "bench2" / "results.jsonl").read_text().splitlines()]
    assert [r["base_l1"] for r in rows2] == [r["base_l1"] for r in rows]
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "bench3"), "--cv-model", "other.onnx"]) == 2
    assert "other.onnx" in capsys.readouterr().err


def test_the_bench_keeps_the_base_where_adapt_would_refuse(monkeypatch):
    """adapt-bench scores what the command would publish: a refit whose leave-one-out cost is >= 1 is
    refused by `adapt`, so the bench keeps the base settings for it."""
    from types import SimpleNamespace

    from backend.evaluation import adapt_run
    from backend.training import adapt_decision
    from backend.training.style import StyleFit, StyleSettings

    base, new = StyleSettings(None, 3.0, 0.5), StyleSettings(0.25, 10.0, 0.0, 0.5)
    cases = SimpleNamespace(outputs=lambda i: i, seconds={0: 0.0, 1: 0.0}, reference=base)
    monkeypatch.setattr(adapt_run, "full_weights", lambda out, s: s)
    for loo, want in ((1.3, base), (0.85, base), (0.6, new), (None, new)):  # 0.85: better, but by under 20 %
        monkeypatch.setattr(adapt_decision, "fit_style",
                            lambda outs, ref, grid, loo=loo: StyleFit(new, ref, 0.5, loo, []))
        fn, info = adapt_run.style_adapter(cases, [])([0, 1])
        assert fn(7) == want and info["refused"] == (want == base)
        assert info["settings"] == want.label()


def test_the_bench_keeps_the_base_where_adapt_would_refuse_the_trained_head(monkeypatch):
    """With --methods train the bench also honours the command's refusal: a held-out cost >= 1 at the
    chosen step count keeps the base model and its settings."""
    from types import SimpleNamespace

    from backend.evaluation import adapt_run
    from backend.training import adapt_decision
    from backend.training import adapt as adapt_mod
    from backend.training.style import StyleFit, StyleSettings

    base, new = StyleSettings(None, 3.0, 0.5), StyleSettings(0.25, 10.0, 0.0, 0.5)
    cases = SimpleNamespace(outputs=lambda i: ("base", i), case=lambda i: i, seconds={0: 0.0, 1: 0.0},
                            reference=base, smooth=0)
    trainer = SimpleNamespace(G=None, replay=[], replay_blend=1.0, options=adapt_mod.TrainOptions())
    monkeypatch.setattr(adapt_run, "full_weights", lambda out, s: (out, s))
    monkeypatch.setattr(adapt_decision, "fit_style", lambda outs, ref, grid: StyleFit(new, ref, 0.5, 0.7, [new, new]))
    for held, refused in (({0: 1.2, 10: 1.05}, True), ({0: 0.9, 10: 0.85}, True), ({0: 0.7, 10: 1.05}, False)):
        best = min(held, key=held.get)
        loo = adapt_mod.LooSteps(best, held, {n: [c, c] for n, c in held.items()}, {}, np.zeros((2, 2)))
        monkeypatch.setattr(adapt_mod, "loo_steps", lambda *a, loo=loo, **k: loo)
        fn, info = adapt_run.train_adapter(cases, [], trainer)([0, 1])
        assert info.get("refused", False) == refused
        assert fn(5) == (("base", 5), base if refused else new)


def test_the_head_trains_under_the_base_settings_when_the_refit_is_refused(monkeypatch):
    from types import SimpleNamespace

    from backend.evaluation import adapt_run
    from backend.training import adapt_decision
    from backend.training import adapt as adapt_mod
    from backend.training.style import StyleFit, StyleSettings

    base, new = StyleSettings(None, 3.0, 0.5), StyleSettings(0.25, 10.0, 0.0, 0.5)
    cases = SimpleNamespace(outputs=lambda i: i, case=lambda i: i, seconds={0: 0.0, 1: 0.0}, reference=base, smooth=0)
    trainer = SimpleNamespace(G=None, replay=[], replay_blend=1.0, options=adapt_mod.TrainOptions())
    seen = []

    def loo_steps(cs, fit, *a, **k):
        seen.append((fit.settings, list(fit.loo_choices)))
        return adapt_mod.LooSteps(0, {0: 1.0}, {0: [1.0, 1.0]}, {}, np.zeros((2, 2)))

    monkeypatch.setattr(adapt_mod, "loo_steps", loo_steps)
    for refit_loo, want in ((0.9, base), (0.7, new)):
        monkeypatch.setattr(adapt_decision, "fit_style",
                            lambda outs, ref, grid, c=refit_loo: StyleFit(new, ref, 0.5, c, [new, new]))
        _, info = adapt_run.train_adapter(cases, [], trainer)([0, 1])
        assert seen[-1] == (want, [want, want]) and info["loo_cost"] == refit_loo


def test_a_settings_only_version_drops_the_base_settings_it_does_not_keep(tmp_path):
    """The base's geodesic share, per-rig rule and enclosing pieces do not survive in a version whose
    settings have none; every other key of the base (its identity) does."""
    import json

    import onnx

    from backend.export.metadata import get_metadata
    from backend.inference.blend_rule import PieceBlendRule
    from backend.inference.model_meta import read_runtime_settings
    from backend.inference.runtime_settings import RuntimeSettings
    from backend.training.adapt_command import write_onnx_with_settings
    from conftest import export_tiny_model, rewrite_meta

    rule = json.dumps(PieceBlendRule(low=0.2, high=1.0, saturation=0.1).as_dict())
    base = rewrite_meta(export_tiny_model(tmp_path / "t.onnx"), tmp_path / "base.onnx", geodesic_share="0.25",
                        enclosing_pieces="0.5", prior_blend_rule=rule)
    want = RuntimeSettings(sharpen=2.0)
    write_onnx_with_settings(base, tmp_path / "v1.onnx", want.stored_values(), "autoskin-v1")
    meta = get_metadata(onnx.load(str(tmp_path / "v1.onnx")))
    assert read_runtime_settings(meta, "v1") == want and meta["model_version"] == "autoskin-v1"
    old = get_metadata(onnx.load(str(base)))
    assert meta["weights_sha256"] == old["weights_sha256"] and meta["feature_config"] == old["feature_config"]


def test_the_command_refuses_a_head_the_held_out_corrections_reject_without_training_it(tiny, tmp_path,
                                                                                         monkeypatch):
    """`adapt` and `adapt-bench` share one decision (backend.training.adapt_decision): a stop rule whose
    best count misses the held-out bar refuses the version, and the head is then never trained."""
    import json

    from backend.training import adapt as adapt_mod

    models, predictor, corr = models_and_corrections(tiny, tmp_path)
    soft = StyleSettings(None, 1.0, 0.0, 0.5)
    for i, (n, r) in enumerate([(3, .3), (4, .25)]):
        save_npz(styled(predictor, chain(n, r, f"c{i}"), soft), corr / f"c{i}.npz")
    trained = []
    monkeypatch.setattr(adapt_mod, "train_head", lambda *a, **k: trained.append(1))
    for held, want in (({0: 0.95, 10: 0.85}, "refused"), ({0: 0.95, 10: 0.7}, "published")):
        best = min(held, key=held.get)
        loo = adapt_mod.LooSteps(best, held, {n: [c, c] for n, c in held.items()}, {}, np.zeros((2, 2)))
        monkeypatch.setattr(adapt_mod, "loo_steps", lambda *a, loo=loo, **k: loo)
        if want == "published":  # a trained head is exported: stand in the base generator for it
            from backend.training.finetune import load_base

            monkeypatch.setattr(adapt_mod, "train_head",
                                lambda *a, **k: (trained.append(1), (load_base(tiny[1])[0], {"steps": 10,
                                                 "replay_steps": 0, "train_seconds": 0.0}))[1])
        run = tmp_path / want
        main(["adapt", "--corrections", str(corr), "--models", str(models), "--out", str(run), "--guard-rigs", "0",
              "--steps", "10", "--dry-run"])
        report = json.loads((run / "report.json").read_text())
        assert report["decision"] == ("refused" if want == "refused" else "evaluated")
        assert report["metrics"]["held_out_cost"] == held[10] and report["metrics"]["steps_chosen"] == 10
        assert len(trained) == (0 if want == "refused" else 1)
