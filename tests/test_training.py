"""Training stack: config, data batching, a short run that learns, exact resume, NaN skipping,
the generator checkpoint, a 2-process torchrun (gloo) run and the CLI. Tiny rigs and widths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.io.npz import save_npz
from backend.rig import RigError
from backend.models.checkpoint import load_generator_checkpoint
from backend.training.config import TrainConfig, load_config
from backend.training.data import (candidate_targets, connected_crop, crop_sample, epoch_batches, split_labeled,
                                   FeatureStore)
from backend.training.schedule import warmup_cosine
from backend.training.trainer import Trainer
from conftest import make_capsule_chain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rigs")
    for split, n in (("train", 6), ("val", 2)):
        (root / split).mkdir()
        for i in range(n):
            rig = make_capsule_chain(n_bones=2 + (i % 3), length=2.0 + 0.4 * i + (0.2 if split == "val" else 0.0),
                                     radius=0.25 + 0.05 * (i % 2), segments=8, rings=8, name=f"{split}{i}")
            save_npz(rig, root / split / f"{split}_{i}.npz")
    return root


def tiny_config(tmp: Path, **sections) -> TrainConfig:
    over = {
        "model": dict(hidden=16, fused=16, critic_hidden=8),
        "features": dict(distance="euclidean", k_bones=3),
        "data": dict(vertex_budget=300, cache_dir=str(tmp / "cache"), plot_rigs=1),
        "optim": dict(lr_g=3e-3, lr_d=1e-3, warmup_steps=2),
        "stages": dict(stage1_epochs=2, stage2_epochs=0, stage3_epochs=0, stage1_mse=0.0),
        "run": dict(plot_every=0, threads=1),
    }
    for sec, vals in sections.items():
        over.setdefault(sec, {}).update(vals)
    lines = []
    for sec, vals in over.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in vals.items()]
    path = tmp / "cfg.toml"
    path.write_text("\n".join(lines))
    return load_config(path)


# ---------------------------------------------------------------- config
def test_default_toml_matches_the_dataclass_defaults():
    assert load_config(ROOT / "configs" / "default.toml") == TrainConfig()


def test_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["optim.lr_g=2e-4", "data.unlabeled_dirs=['a', 'b']", "features.distance=euclidean",
                             "ablation.adversarial=false"])
    assert cfg.optim.lr_g == 2e-4 and cfg.data.unlabeled_dirs == ["a", "b"]
    assert cfg.features.distance == "euclidean" and cfg.ablation.adversarial is False
    with pytest.raises(RigError, match="unknown key optim.lr"):
        load_config(None, ["optim.lr=1"])
    with pytest.raises(RigError, match="expected an integer"):
        load_config(None, ["stages.patience=1.5"])
    with pytest.raises(RigError, match=r"data.augment_detach_copies must be in \[0, 1\]"):
        load_config(None, ["data.augment_detach_copies=1.5"])
    assert load_config(None, ["data.augment_detach_copies=0.5"]).data.augment_detach_copies == 0.5
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(RigError, match="bad.toml"):
        load_config(bad)


def test_warmup_then_cosine_to_min_lr():
    f = warmup_cosine(4, 20, 1e-4, 1e-6)
    assert f(0) == pytest.approx(0.25) and f(3) == pytest.approx(1.0)
    assert f(4) == pytest.approx(1.0) and f(12) == pytest.approx(0.5 * (1 + 0.01))
    assert f(20) == pytest.approx(0.01) and f(100) == pytest.approx(0.01)


# ---------------------------------------------------------------- data
def test_epoch_batches_budget_determinism_and_sharding():
    sizes = [100, 250, 40, 300, 90, 120, 500, 60]
    b = epoch_batches(sizes, 300, seed=1, epoch=3)
    assert b == epoch_batches(sizes, 300, seed=1, epoch=3)
    assert b != epoch_batches(sizes, 300, seed=1, epoch=4)
    assert sorted(i for batch in b for i in batch) == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in batch) <= 300 or len(batch) == 1 for batch in b)
    r0 = epoch_batches(sizes, 300, 1, 3, rank=0, world=2)
    r1 = epoch_batches(sizes, 300, 1, 3, rank=1, world=2)
    assert len(r0) == len(r1) == (len(b) + 1) // 2
    assert {i for batch in r0 + r1 for i in batch} == set(range(len(sizes)))


def test_connected_crop_is_a_connected_patch():
    rig = make_capsule_chain(n_bones=3, segments=8, rings=12)
    from backend.features.pipeline import neighbor_table

    nb = neighbor_table(rig.vertices, rig.faces, 6)
    keep = connected_crop(nb, 40, np.random.default_rng(0))
    assert len(keep) == 40 and len(np.unique(keep)) == 40
    # grow from the first kept vertex inside the patch: reaches all of it
    inside = set(keep.tolist())
    seen, todo = {int(keep[0])}, [int(keep[0])]
    while todo:
        v = todo.pop()
        for n in nb[v]:
            if int(n) in inside and int(n) not in seen:
                seen.add(int(n))
                todo.append(int(n))
    assert seen == inside


def test_crop_sample_and_targets(tmp_path, data_dir):
    from backend.features.pipeline import FeatureConfig

    store = FeatureStore(tmp_path, FeatureConfig(distance="euclidean", k_bones=3))
    s = store.sample(data_dir / "train" / "train_2.npz")
    assert s.labeled and s.target.shape == s.cand.shape
    assert np.allclose(s.target[s.row_valid].sum(1), 1.0, atol=1e-5)
    keep = np.arange(10, 60)
    c = crop_sample(s, keep)
    assert c.num_vertices == 50 and c.neighbors.min() >= 0 and c.neighbors.max() < 50
    assert np.array_equal(c.target, s.target[keep])
    assert list(tmp_path.glob("*.npz")), "features are cached on disk"
    unl = store.sample(data_dir / "train" / "train_2.npz", labeled=False)
    assert not unl.labeled and not unl.row_valid.any()


def test_remeshed_variants_have_their_own_cache_entries(tmp_path, data_dir):
    from backend.features.augment import AugmentConfig
    from backend.features.pipeline import FeatureConfig

    fc = FeatureConfig(distance="euclidean", k_bones=3)
    path = data_dir / "train" / "train_2.npz"
    plain = FeatureStore(tmp_path, fc)
    remesh = FeatureStore(tmp_path, fc, AugmentConfig(remesh=1.0))
    assert plain.key_parts(path, 0) == remesh.key_parts(path, 0)  # the rig itself is shared
    assert plain.key_parts(path, 1) != remesh.key_parts(path, 1)
    a, b = plain.sample(path, 1), remesh.sample(path, 1)
    assert a.num_vertices != b.num_vertices  # the remeshed variant has another tessellation
    assert np.allclose(b.target[b.row_valid].sum(1), 1.0, atol=1e-5)


def test_helper_bones_are_no_training_candidates(tmp_path):
    from backend.features.pipeline import FeatureConfig
    from backend.io.npz import save_npz
    from conftest import make_capsule_chain

    rig = make_capsule_chain(4)
    rig.joint_names[-1] = "bone_2_end"
    save_npz(rig, tmp_path / "r.npz")
    fc = FeatureConfig(distance="euclidean", k_bones=4)
    plain = FeatureStore(tmp_path / "c", fc)
    skip = FeatureStore(tmp_path / "c", fc, skip_helpers=True)
    assert plain.key_parts(tmp_path / "r.npz", 0) != skip.key_parts(tmp_path / "r.npz", 0)
    a, b = plain.sample(tmp_path / "r.npz"), skip.sample(tmp_path / "r.npz")
    assert 3 in a.deform_index and 3 not in b.deform_index
    assert b.cand.shape[1] == 3 and np.allclose(b.target[b.row_valid].sum(1), 1.0, atol=1e-5)


def test_candidate_targets_renormalise_over_candidates():
    w = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    cand = np.array([[0, 1], [0, 1], [1, 0]])
    t, valid, mass = candidate_targets(w, cand, np.arange(3))
    assert np.allclose(t[0], [0.625, 0.375]) and mass[0] == pytest.approx(0.8)
    assert valid.tolist() == [True, False, False] and not t[1:].any()


def test_split_labeled_fraction():
    flags = split_labeled(10, 0.3, seed=0)
    assert sum(flags) == 3 and flags == split_labeled(10, 0.3, seed=0)
    assert sum(split_labeled(10, 0.01, 0)) == 1 and sum(split_labeled(10, 0.0, 0)) == 0
    with pytest.raises(RigError):
        split_labeled(10, 1.5, 0)


# ---------------------------------------------------------------- training
def test_short_training_lowers_validation_error(tmp_path, data_dir):
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, model=dict(use_prior=False), stages=dict(stage1_epochs=12, patience=50),
                      run=dict(plot_every=12))
    tr = Trainer(cfg, data_dir, tmp_path / "run", progress=False, tensorboard=False)
    first = tr.validate()["val_mse"]
    summary = tr.fit()
    last = tr.history["epoch"][-1]["val_mse"]
    assert not summary["killed"]
    assert last < 0.6 * first, (first, last)
    best = tmp_path / "run" / "best_generator.pt"
    model, meta = load_generator_checkpoint(best)
    assert meta["config"] == cfg.generator_kwargs() and meta["feature_config"]["distance"] == "euclidean"
    assert meta["train_summary"]["val_mse"] <= last + 1e-9
    assert (tmp_path / "run" / "plots" / "weights.png").stat().st_size > 0
    assert (tmp_path / "run" / "plots" / "losses.png").is_file()
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert kinds.count("epoch") == 12 and "step" in kinds


def _final_params(run: Path) -> dict[str, torch.Tensor]:
    st = torch.load(run / "state.pt", weights_only=False)
    return {f"{m}.{k}": v for m in ("G", "Ds", "Du") for k, v in st[m].items()}


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, data_dir):
    torch.set_num_threads(1)
    kw = dict(data=dict(labeled_fraction=0.5), stages=dict(stage1_epochs=1, stage2_epochs=2),
              run=dict(checkpoint_every_steps=1))
    cfg = tiny_config(tmp_path, **kw)
    full = Trainer(cfg, data_dir, tmp_path / "full", progress=False, tensorboard=False).fit()
    assert not full["killed"] and full["steps"] >= 5
    killed_cfg = tiny_config(tmp_path, **dict(kw, run=dict(checkpoint_every_steps=1,
                                                           kill_after_steps=full["steps"] - 3)))
    part = Trainer(killed_cfg, data_dir, tmp_path / "part", progress=False, tensorboard=False).fit()
    assert part["killed"]
    resumed = Trainer(cfg, data_dir, tmp_path / "part", resume=True, progress=False, tensorboard=False).fit()
    assert resumed["steps"] == full["steps"]
    a, b = _final_params(tmp_path / "full"), _final_params(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    # critics were trained (stage 2 ran with unlabelled data)
    log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert any("grad_du" in r and "grad_ds" in r for r in log if r["kind"] == "step")
    # a changed config is refused on resume
    other = tiny_config(tmp_path, **kw)
    other.optim.lr_g = 1.0
    with pytest.raises(RigError, match="lr_g"):
        Trainer(other, data_dir, tmp_path / "part", resume=True, progress=False, tensorboard=False)


def test_nonfinite_step_is_skipped_and_reported(tmp_path, data_dir):
    cfg = tiny_config(tmp_path)
    tr = Trainer(cfg, data_dir, tmp_path / "run", progress=False, tensorboard=False)
    tr.prepare_data()
    tr.build_optimizers(1)
    batch = tr.train_l.batch([0, 1], 0, 0)
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    w = tr.generate(batch.tensors)
    norm = tr.apply("g", tr.G, w.sum() * float("nan"), batch)
    assert not np.isfinite(norm)
    for k, v in tr.G.state_dict().items():
        assert torch.equal(v, before[k]), k
    events = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    ev = [e for e in events if e.get("event") == "nonfinite_skipped"]
    assert ev and ev[0]["batch"] == batch.names and ev[0]["step"] == 0
    tr.save_state()
    assert (tmp_path / "run" / "state.pt").is_file()


def test_generator_checkpoint_errors(tmp_path):
    junk = tmp_path / "g.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RigError, match="g.pt"):
        load_generator_checkpoint(junk)
    with pytest.raises(RigError, match="no such"):
        load_generator_checkpoint(tmp_path / "missing.pt")


def run_cmd(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run in its own process group; on timeout kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_two_process_torchrun_gloo(tmp_path, data_dir):
    cfg = tmp_path / "cfg.toml"
    tiny_config(tmp_path, data=dict(labeled_fraction=0.5), stages=dict(stage1_epochs=1, stage2_epochs=1))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "backend", "train", "--config", str(cfg), "--data", str(data_dir), "--out", str(out), "--no-progress"]
    proc = run_cmd(cmd, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["world"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "best_generator.pt").is_file() and summary["steps"] >= 2
    assert summary["world"] == 2 and summary["replicas_in_sync"]


def test_cli_reports_bad_input(tmp_path, data_dir):
    proc = run_cmd([sys.executable, "-m", "backend", "train", "--data", str(data_dir), "--out",
                    str(tmp_path / "r"), "--set", "optim.nope=1"], timeout=120)
    assert proc.returncode == 2 and "optim.nope" in proc.stderr
    proc = run_cmd([sys.executable, "-m", "backend", "train", "--data", str(tmp_path / "none"), "--out",
                    str(tmp_path / "r")], timeout=120)
    assert proc.returncode == 2 and "no such data folder" in proc.stderr


def test_cli_flags_map_to_the_config(tmp_path):
    import argparse

    from backend.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--config", str(ROOT / "configs" / "tiny.toml"),
                              "--no-adversarial", "--no-consistency", "--no-physical", "--labeled-fraction", "0.25",
                              "--unlabeled-dir", "u1", "--unlabeled-dir", "u2", "--cache-dir", str(tmp_path),
                              "--set", "stages.patience=3"])
    cfg = train_cli.build_config(args)
    assert (cfg.ablation.adversarial, cfg.ablation.consistency, cfg.ablation.physical) == (False, False, False)
    assert cfg.data.labeled_fraction == 0.25 and cfg.data.unlabeled_dirs == ["u1", "u2"]
    assert cfg.data.cache_dir == str(tmp_path) and cfg.stages.patience == 3
    assert cfg.model.hidden == 32  # from tiny.toml


def test_piece_feature_training_exports_a_model_the_runtime_uses(tmp_path, data_dir):
    from backend.export.onnx_export import export_generator, load_checkpoint
    from backend.features.pipeline import FP
    from backend.features.pieces import FPIECE
    from backend.inference.predictor import Predictor

    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, features=dict(piece_features=True), stages=dict(stage1_epochs=1, stage2_epochs=1))
    assert cfg.generator_kwargs()["fp"] == FP + FPIECE
    Trainer(cfg, data_dir, tmp_path / "run", progress=False, tensorboard=False).fit()
    from backend.export.onnx_export import feature_config_of

    model, ckpt = load_checkpoint(tmp_path / "run" / "best_generator.pt")
    fcfg = feature_config_of(ckpt, "best_generator.pt")
    assert fcfg.piece_features and model.config["fp"] == FP + FPIECE
    export_generator(model, tmp_path / "m.onnx", fcfg)
    rig = make_capsule_chain(n_bones=3, segments=8, rings=8)
    pred = Predictor(tmp_path / "m.onnx", device="cpu").predict(rig)
    assert pred.weights.shape == (rig.num_vertices, rig.num_bones)
    np.testing.assert_allclose(pred.weights.sum(axis=1), 1.0, atol=1e-5)


def test_warm_start_loads_the_checkpoint_and_refuses_another_architecture(tmp_path, data_dir):
    from backend.cli import train as train_cli
    from backend.models.checkpoint import load_generator_checkpoint

    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, stages=dict(stage1_epochs=1))
    Trainer(cfg, data_dir, tmp_path / "first", progress=False, tensorboard=False).fit()
    best = tmp_path / "first" / "best_generator.pt"
    _, ckpt = load_generator_checkpoint(best)

    # the new run may use other features (here: the parent candidate); its G starts from the weights
    warm = tiny_config(tmp_path, features=dict(parent_candidate=True), run=dict(init_generator=str(best)))
    t = Trainer(warm, data_dir, tmp_path / "second", progress=False, tensorboard=False)
    for k, v in t.G.state_dict().items():
        torch.testing.assert_close(v, ckpt["state_dict"][k])
    cold = Trainer(tiny_config(tmp_path), data_dir, tmp_path / "third", progress=False, tensorboard=False)
    assert any(not torch.equal(v, ckpt["state_dict"][k]) for k, v in cold.G.state_dict().items())
    summary = t.fit()  # and it trains from there
    assert (tmp_path / "second" / "best_generator.pt").is_file() and summary["steps"] > 0
    # the option travels with the model into the runtime
    from backend.export.onnx_export import export_generator, feature_config_of, load_checkpoint
    from backend.inference.predictor import Predictor

    model, ck2 = load_checkpoint(tmp_path / "second" / "best_generator.pt")
    fcfg = feature_config_of(ck2, "best_generator.pt")
    assert fcfg.parent_candidate
    export_generator(model, tmp_path / "p.onnx", fcfg)
    pred = Predictor(tmp_path / "p.onnx", device="cpu").predict(make_capsule_chain(n_bones=4, segments=8, rings=8))
    assert pred.info["feature_config"]["parent_candidate"] is True
    np.testing.assert_allclose(pred.weights.sum(axis=1), 1.0, atol=1e-5)

    wider = tiny_config(tmp_path, model=dict(hidden=24, fused=16, critic_hidden=8), run=dict(init_generator=str(best)))
    with pytest.raises(RigError, match="hidden"):
        Trainer(wider, data_dir, tmp_path / "fourth", progress=False, tensorboard=False)
    with pytest.raises(RigError, match="no such generator checkpoint"):
        Trainer(tiny_config(tmp_path, run=dict(init_generator=str(tmp_path / "none.pt"))), data_dir,
                tmp_path / "fifth", progress=False, tensorboard=False)

    import argparse

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--init", str(best)])
    assert train_cli.build_config(args).run.init_generator == str(best)


def test_warm_start_may_grow_the_generator_but_not_shrink_it(tmp_path, data_dir):
    from backend.export.onnx_export import example_inputs, torch_forward
    from backend.models.checkpoint import load_generator_checkpoint

    torch.set_num_threads(1)
    Trainer(tiny_config(tmp_path, stages=dict(stage1_epochs=1)), data_dir, tmp_path / "first",
            progress=False, tensorboard=False).fit()
    best = tmp_path / "first" / "best_generator.pt"
    old, _ = load_generator_checkpoint(best)
    grow = tiny_config(tmp_path, model=dict(hidden=16, fused=16, critic_hidden=8, context_layers=1, pair_attention=2),
                       run=dict(init_generator=str(best)))
    t = Trainer(grow, data_dir, tmp_path / "grown", progress=False, tensorboard=False)
    assert t.G.config["pair_attention"] == 2 and len(t.G.context) == 1
    inputs = example_inputs(60, 4, 5, 3, seed=1, fp=old.config["fp"])
    # the grown generator starts as the old one
    np.testing.assert_allclose(torch_forward(t.G.eval(), inputs), torch_forward(old, inputs), atol=1e-6, rtol=0)
    t.fit()
    grown, ck = load_generator_checkpoint(tmp_path / "grown" / "best_generator.pt")
    assert ck["config"]["pair_attention"] == 2 and ck["config"]["context_layers"] == 1
    # a plain run cannot start from the grown generator: its added layers would be dropped
    with pytest.raises(RigError, match="pair_attention"):
        Trainer(tiny_config(tmp_path, run=dict(init_generator=str(tmp_path / "grown" / "best_generator.pt"))),
                data_dir, tmp_path / "shrunk", progress=False, tensorboard=False)


def test_cpu_bf16_trains_g_in_bfloat16_repeatably(tmp_path, data_dir):
    """run.cpu_amp = "bf16": G runs under CPU autocast (its linear layers in bfloat16), training still
    lowers the validation error, a second run repeats the first bit for bit, and the weights differ
    from the float32 run's."""
    from backend.training.updates import Updates

    torch.set_num_threads(1)
    kw = dict(model=dict(use_prior=False), stages=dict(stage1_epochs=6, patience=50))
    runs = {}
    for name, amp in (("bf16", "bf16"), ("bf16_again", "bf16"), ("fp32", "off")):
        (tmp_path / name).mkdir()
        cfg = tiny_config(tmp_path / name, run=dict(plot_every=0, threads=1, cpu_amp=amp), **kw)
        tr = Trainer(cfg, data_dir, tmp_path / name / "run", progress=False, tensorboard=False)
        first = tr.validate()["val_mse"]
        assert not tr.fit()["killed"]
        assert tr.history["epoch"][-1]["val_mse"] < 0.8 * first, name
        runs[name] = _final_params(tmp_path / name / "run")
    for k in runs["bf16"]:
        assert torch.equal(runs["bf16"][k], runs["bf16_again"][k]), k
    assert any(not torch.equal(runs["bf16"][k], runs["fp32"][k]) for k in runs["bf16"])
    cfg = tiny_config(tmp_path, run=dict(cpu_amp="bf16"))
    lin = torch.nn.Linear(4, 4)
    up = Updates(cfg, lin, lin, lin, torch.device("cpu"), None, lambda **k: None)
    with up.autocast():
        assert lin(torch.zeros(2, 4)).dtype == torch.bfloat16


def test_a_config_written_before_a_key_existed_resumes_at_its_default():
    from backend.training.config import TrainConfig, config_diff

    new = TrainConfig().to_dict()
    old = {sec: {k: v for k, v in vals.items() if (sec, k) != ("run", "cpu_amp")} for sec, vals in new.items()}
    assert config_diff(old, new) == []
    new["run"]["cpu_amp"] = "bf16"
    assert config_diff(old, new) == ["run.cpu_amp: 'off' != 'bf16'"]
