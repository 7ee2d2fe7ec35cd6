"""The steps that ``recipe`` and ``cv`` chain: a fold's data view, training, export with the
config's run-time settings, evaluation. Each step is skipped when its output exists and resumes
a killed run, so a long job continues where it stopped (also in a later session)."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from backend.training.config import RUNTIME_FIELDS, RuntimeConfig, TrainConfig


def say(msg: str) -> None:
    print(msg, flush=True)


def ensure_view(data: str | Path, folds: list[list[str]], holdout: int | None, out: Path) -> Path:
    """The fold's data view under ``out`` (written once; view.json marks it complete)."""
    from backend.training.folds import write_fold_view

    if not (out / "view.json").is_file():
        counts = write_fold_view(data, out, folds, holdout)
        say(f"[view] {out}: {json.dumps(counts)}")
    return out


def ensure_synth(count: int, seed: int, folder: Path) -> Path:
    """``count`` synthetic creatures of ``seed`` (backend.synth, no weights) in ``folder``, written
    once (a ``done`` marker lists them); creature i depends only on (seed, i)."""
    from backend.io.npz import save_npz
    from backend.synth.creature import generate_creature

    marker = folder / "done"
    if marker.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    say(f"[synth] {count} creatures (seed {seed}) -> {folder}")
    names = []
    for i in range(count):
        rig = generate_creature(seed, i)
        path = folder / f"{rig.name}.npz"
        if not path.is_file():
            save_npz(rig, path, include_weights=False)
        names.append(path.name)
    marker.write_text("\n".join(names) + "\n")
    return folder


def with_unlabeled(cfg: TrainConfig, cache: Path, extra: list[Path] = ()) -> TrainConfig:
    """The config with its synthetic creatures (``data.synth_unlabeled``, made under ``cache``) and
    ``extra`` folders added to the unlabelled pool."""
    dirs = list(cfg.data.unlabeled_dirs)
    if cfg.data.synth_unlabeled > 0:
        n, seed = cfg.data.synth_unlabeled, cfg.data.synth_seed
        dirs.append(str(ensure_synth(n, seed, cache / f"synth_{n}_seed{seed}")))
    dirs += [str(p) for p in extra]
    return replace(cfg, data=replace(cfg.data, unlabeled_dirs=dirs))


def ensure_trained(cfg: TrainConfig, view: Path, out: Path, progress: bool = False) -> Path:
    """Train (or continue training) ``cfg`` on ``view`` into ``out``; returns best_generator.pt."""
    from backend.training.trainer import Trainer

    best = out / "best_generator.pt"
    if (out / "summary.json").is_file() and best.is_file():
        say(f"[train] {out}: done before")
        return best
    resume = (out / "state.pt").is_file()
    say(f"[train] {out}: {'resuming' if resume else 'starting'}")
    trainer = Trainer(cfg, view, out, resume=resume, progress=progress, tensorboard=False)
    summary = trainer.fit()
    if summary.get("stopped") or summary.get("killed") or not best.is_file():
        # a SIGTERM (``stopped``) ends the whole job with 143, like ``train``; nothing is exported
        print(f"[train] {out}: stopped before the end; run the same command again to continue", file=sys.stderr)
        raise SystemExit(143 if summary.get("stopped") else 1)
    say(f"[train] {out}: best score {summary['best_score']:.5f} after {summary['steps']} steps, "
        f"{summary['seconds'] / 60:.1f} min")
    return best


def final_generator(run: Path) -> Path | None:
    """``run``/final_generator.pt: the generator as a finished training ended (its last stage's last
    step, whatever ``rigs/val`` chose as best), written once from the run's state.pt; None before
    the run has finished."""
    out = run / "final_generator.pt"
    state = run / "state.pt"
    if not (run / "summary.json").is_file() or not state.is_file():
        return None
    if out.is_file() and out.stat().st_mtime_ns >= state.stat().st_mtime_ns:
        return out
    from dataclasses import asdict

    from backend.features.pipeline import FEATURE_VERSION
    from backend.models.checkpoint import save_generator
    from backend.training.checkpoint import load_state
    from backend.training.config import config_from_dict

    st = load_state(state)
    if st["feature_version"] != FEATURE_VERSION:
        raise SystemExit(f"[export] {state}: features {st['feature_version']} != {FEATURE_VERSION}")
    cfg = config_from_dict(st["config"], str(state))
    save_generator(out, st["G"], cfg.generator_kwargs(), asdict(cfg.feature_config()), FEATURE_VERSION,
                   {"stage": st["pos"]["stage"], "step": st["pos"]["step"], "final": True})
    return out


def export_is_current(checkpoint: Path, out: Path, runtime: RuntimeConfig, model_version: str | None = None) -> bool:
    """``out`` exists, is newer than ``checkpoint`` and carries these run-time settings (and model
    version, when one is given)."""
    if not out.is_file() or out.stat().st_mtime_ns < Path(checkpoint).stat().st_mtime_ns:
        return False
    import onnx

    from backend.export.metadata import get_metadata
    from backend.inference.model_meta import KEY_MODEL_VERSION, read_runtime_settings

    meta = get_metadata(onnx.load(str(out), load_external_data=False))
    have = read_runtime_settings(meta, out)
    same = all(abs(getattr(have, k) - float(getattr(runtime, k))) < 1e-9 for k in RUNTIME_FIELDS)
    return same and have.prior_blend_rule is None and model_version in (None, meta.get(KEY_MODEL_VERSION))


def export_model(checkpoint: Path, out: Path, runtime: RuntimeConfig, model_version: str | None = None,
                 results: Path | None = None) -> Path:
    """Export the generator with these run-time settings (``RuntimeConfig()``: the network alone, no
    prior blend, sharpening or diffusion); skipped when ``out`` is current (``export_is_current``),
    written again (atomically) when the settings changed or the checkpoint is newer; then the rows
    of that model in the evaluation ``results`` (results.jsonl) are dropped so they are scored again."""
    if export_is_current(checkpoint, out, runtime, model_version):
        return out
    if results is not None:
        from backend.evaluation.baselines import method_label

        forget_method(results, method_label(f"model:{out}"))
    from backend.export.onnx_export import export_generator, feature_config_of, load_checkpoint

    model, ckpt = load_checkpoint(str(checkpoint))
    res = export_generator(model, out, feature_config_of(ckpt, str(checkpoint)),
                           train_summary=ckpt.get("train_summary"), model_version=model_version,
                           **{name: getattr(runtime, name) for name in RUNTIME_FIELDS})
    say(f"[export] {res.path}: {res.size_bytes / 1e6:.2f} MB, max |torch - onnxruntime| {res.max_abs_diff:.1e}, "
        f"prior blend {runtime.prior_blend:g}, sharpen {runtime.sharpen:g}, diffuse {runtime.diffuse:g} %, "
        f"enclosing pieces {runtime.enclosing_pieces:g}")
    return out


def parse_runtime(spec: str) -> tuple[str, RuntimeConfig]:
    """``NAME:key=value,...`` (keys of RuntimeConfig: RUNTIME_FIELDS) -> (NAME, settings);
    keys left out keep RuntimeConfig's defaults (the network alone)."""
    from backend.rig import RigError
    from backend.training.config_rules import check_values

    name, _, body = spec.partition(":")
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise RigError(f"--runtime {spec!r}: expected NAME:key=value,... with a plain NAME")
    values: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in body.split(","))):
        key, _, raw = item.partition("=")
        if key not in RUNTIME_FIELDS:
            raise RigError(f"--runtime {spec!r}: unknown setting {key!r} ({', '.join(RUNTIME_FIELDS)})")
        try:
            values[key] = float(raw)
        except ValueError:
            raise RigError(f"--runtime {spec!r}: {key} must be a number, got {raw!r}") from None
    runtime = RuntimeConfig(**values)
    check_values(replace(TrainConfig(), runtime=runtime), f"--runtime {name}")
    return name, runtime


def forget_method(results: Path, method: str) -> None:
    """Drop ``method``'s rows from an evaluation's results.jsonl (rewritten atomically), so a resumed
    ``ensure_evaluated`` scores it again (its model was exported again)."""
    from backend.io.atomic import atomic_path

    if not results.is_file():
        return
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [x for x in lines if not x.strip() or json.loads(x).get("method") != method]
    if len(keep) != len(lines):
        with atomic_path(results) as tmp:
            tmp.write_text("".join(keep), encoding="utf-8")


def ensure_evaluated(data: Path, methods: list[str], out: Path, manifest: Path | None = None) -> Path:
    """``evaluate`` the methods on the rigs of ``data`` into ``out`` (resumed; rigs and methods
    already scored are skipped). Returns results.jsonl."""
    from backend.evaluation.baselines import make_method
    from backend.evaluation.runner import EvalConfig, find_manifest, find_rig_files, load_manifest_kinds, run_evaluation

    manifest = manifest or find_manifest(data)
    kinds = load_manifest_kinds(manifest) if manifest else {}
    outcome = run_evaluation(find_rig_files(data), [make_method(m) for m in methods], out, kinds=kinds,
                             config=EvalConfig(), resume=(out / "results.jsonl").is_file(), progress=False,
                             data_label=str(data))
    if outcome.interrupted:
        print("[evaluate] interrupted: partial results kept", file=sys.stderr)
        raise SystemExit(130)
    say(f"[evaluate] {out}: {len(outcome.rows)} results")
    return out / "results.jsonl"
