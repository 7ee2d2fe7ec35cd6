"""The ``adapt`` loop: learn a studio's style from its corrected characters, judge the new version on
what the studio cares about, and publish it through the versioned model store.

1. The corrections (backend.training.corrections; a plain painted rig counts as fully corrected)
   are prepared as the runtime sees them and the post-network settings refitted on them
   (backend.training.style); with ``train`` the generator's head is trained on them too
   (backend.training.adapt).
2. The guard. Studio: with two corrections or more, each is left out in turn, the adaptation is
   made without it and scored on it; the new version must beat the base there by ``style.MIN_GAIN``
   (mean relative cost of L1 and deformation below ``style.MAX_HELD_OUT_COST``). With one correction
   there is nothing to hold out, and only a large gain on it (``style.MIN_GAIN``) moves the settings.
   Collapse: on a few rigs of the training artists' validation split the per-vertex L1 may rise by at
   most ``collapse`` (relative), or up to the L1 of the model-free geodesic falloff when that is higher.
3. Publishing: ``autoskin-vN`` with the card last (backend.training.publish.write_version); a
   settings-only version reuses the base network's ONNX graph with new metadata.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from backend.evaluation.metrics import l1_per_vertex, restrict
from backend.inference import model_store
from backend.io.atomic import atomic_path
from backend.rig import RigError
from backend.training.publish import write_version
from backend.training.adapt_decision import SKIP_GEODESIC, SKIP_ONE, decide
from backend.training.style import (MAX_HELD_OUT_COST, MIN_GAIN, StyleSettings, full_weights, grid_diffuses,
                                    model_settings, onnx_net, prepare_case, rig_outputs, style_grid)

REFUSED = 3
#: The model-free geodesic falloff alone: a version no worse than it on validation has not collapsed.
FALLOFF = StyleSettings(None, 1.0, 0.0, 1.0)


@dataclass
class AdaptOptions:
    """train: also train the generator's head; steps: the most training steps the leave-one-out stop
    rule tries; collapse: largest relative
    rise of the validation L1; guard_rigs: validation rigs scored (0 = no collapse check);
    activate: make the new version the model in use; dry_run: decide, publish nothing."""

    train: bool = True
    steps: int = 40
    collapse: float = 0.5
    guard_rigs: int = 6
    activate: bool = True
    dry_run: bool = False


@dataclass
class AdaptResult:
    decision: str  # "published", "refused", "unchanged", "evaluated"
    message: str
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    version: Optional[int] = None


def runtime_settings(s: StyleSettings, base_meta: dict) -> dict:
    """The model metadata settings of ``s`` on top of the base model's (prior_blend None keeps the base's
    fixed blend and per-rig rule)."""
    from backend.inference.model_meta import read_runtime_settings

    base = read_runtime_settings(base_meta, "base model")  # a fixed prior_blend replaces the per-rig rule
    return base.with_overrides(prior_blend=s.prior_blend, sharpen=s.sharpen, diffuse=s.diffuse,
                               geodesic_share=s.geodesic).stored_values()


def write_onnx_with_settings(src: Path, dst: Path, settings: dict, model_version: str) -> None:
    """Copy of the ONNX model ``src`` at ``dst`` (atomically) whose runtime settings and model version
    are replaced; the graph and its weights are untouched."""
    import onnx

    from backend.export.metadata import RUNTIME_KEYS, get_metadata, runtime_metadata, set_metadata
    from backend.inference import model_meta as mm

    proto = onnx.load(str(src))
    meta = {k: v for k, v in get_metadata(proto).items() if k not in RUNTIME_KEYS}
    meta.update(runtime_metadata(**settings))
    meta[mm.KEY_MODEL_VERSION] = model_version
    del proto.metadata_props[:]  # set_metadata keeps keys it is not given: a base's setting would survive
    set_metadata(proto, meta)
    with atomic_path(dst, suffix=".onnx") as tmp:
        onnx.save(proto, str(tmp))
        mm.parse_model_info(get_metadata(onnx.load(str(tmp))), tmp)  # what the runtime will read back


def publish_version(models: Path, base_onnx: Path, base_ckpt: Optional[Path], settings: dict, card: dict,
                    G=None, ckpt: Optional[dict] = None, activate: bool = True) -> model_store.ModelVersion:
    """Write ``autoskin-vN`` (checkpoint, ONNX, markdown card, JSON card last); on any failure nothing
    of it is left. ``G`` (a trained generator, with the base ``ckpt``) is exported; else the base graph
    is reused with the new settings."""

    def write(n: int, paths: dict[str, Path]) -> dict:
        if G is not None:
            from backend.export.onnx_export import export_generator
            from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
            from backend.models.checkpoint import save_generator

            summary = {"adapted_from": str(base_onnx), "corrections": len(card["corrections"]), "version": n}
            save_generator(paths["pth"], G.state_dict(), ckpt["config"], ckpt["feature_config"], FEATURE_VERSION,
                           summary)
            export_generator(G, paths["onnx"], FeatureConfig(**ckpt["feature_config"]), train_summary=summary,
                             model_version=f"autoskin-v{n}", **settings)
        else:
            if base_ckpt is not None and base_ckpt.is_file():
                model_store.copy_atomic(base_ckpt, paths["pth"])
            write_onnx_with_settings(base_onnx, paths["onnx"], settings, f"autoskin-v{n}")
        return dict(card, version=n, onnx=paths["onnx"].name, onnx_sha256=model_store.file_sha256(paths["onnx"]),
                    checkpoint=paths["pth"].name if paths["pth"].is_file() else None, model_version=f"autoskin-v{n}")

    return write_version(models, write, card_text, activate)


def card_text(card: dict) -> str:
    m = card["metrics"]
    lines = [f"# Auto Skin model v{card['version']}", "",
             f"Adapted {card['created']} to {len(card['corrections'])} corrected character(s) from "
             f"`{card['base']['onnx']}`: {card['style']}" + (", scoring head trained" if card.get("trained") else "")
             + ".", "", "| | value |", "|---|---|"]
    for k, v in m.items():
        if isinstance(v, float):
            lines.append(f"| {k} | {v:.4f} |")
    lines += ["", "## Corrections learned", ""] + [f"- {c['file']} ({c['vertices']} vertices)"
                                                   for c in card["corrections"]]
    return "\n".join(lines) + "\n"


def validation_l1(predict: Callable, rigs: list) -> float:
    """Mean per-vertex L1 of ``predict(i) -> (V, J)`` over the validation ``rigs``."""
    vals = []
    for i, rig in enumerate(rigs):
        t, p, _ = restrict(rig.weights, predict(i), rig.is_deform)
        vals.append(l1_per_vertex(t, p))
    return float(np.mean(vals))


def _advice(k: int) -> str:
    if k < 3:
        return "export more corrected characters of this style (3 or more) and run adapt again"
    return ("check that the corrections share one style (one studio, one kind of character); "
            "with --train the scoring head learns more than the settings")


def cached_case(path: Path, rig, predictor, cache: Path):
    """A validation rig as a :class:`backend.training.style.RigCase` from the training feature cache
    (full resolution, helper bones left out: a close, fast stand-in for the runtime's preparation)."""
    from backend.features.helper_bones import without_helpers
    from backend.training.data import FeatureStore
    from backend.training.style import RigCase, enclosed_of

    store = FeatureStore(cache, predictor.model.info.feature_config, skip_helpers=True)
    feats = store.sample(path).features()
    base = without_helpers(rig)[0]
    return RigCase(rig, base, feats, None, predictor.blend_for(rig),
                   enclosed=enclosed_of(base, predictor.settings.enclosing_pieces))


def run_adapt(corrections: list, models: Path, out: Path, data: Optional[Path], options: AdaptOptions,
              model: Optional[Path] = None, base: Optional[Path] = None, log: Callable[[str], None] = print,
              cache: Path = Path("runs") / "cache") -> AdaptResult:
    """Adapt the model in use (or ``model`` with checkpoint ``base``) to ``corrections``
    (backend.training.corrections.Correction); writes ``out/report.json``. ``cache``: the feature
    cache of the validation rigs."""
    import onnx

    from backend.export.metadata import get_metadata
    from backend.inference.predictor import Predictor
    from backend.io.npz import load_npz

    if not corrections:
        raise RigError("no usable correction to learn from")
    model = Path(model) if model is not None else Path(models) / model_store.CURRENT_NAME
    predictor = Predictor(model, threads=1)
    reference, smooth = model_settings(predictor)
    grid = style_grid(reference)
    cases = [prepare_case(c.rig, predictor) for c in corrections]
    net = onnx_net(predictor)
    outs = [rig_outputs(c, net, grid_diffuses(grid), smooth) for c in cases]
    k = len(corrections)
    base_ckpt = Path(base) if base is not None else model_store.current_checkpoint(models)
    head: dict = {}

    def loo(fit):
        from backend.training.adapt import TrainOptions, loo_steps, replay_samples
        from backend.training.finetune import load_base

        log("choosing the head's training steps: trained on all corrections but one, scored on that one, in turn")
        head["G0"], head["ckpt"] = load_base(base_ckpt)
        head["replay"] = replay_samples(Path(data), _feature_config(head["ckpt"])) if data is not None else []
        return loo_steps(cases, fit, head["G0"], head["replay"], replay_blend, TrainOptions(steps=options.steps),
                         smooth)

    replay_blend = float(predictor.model.info.settings.prior_blend)
    log(f"{k} correction(s); base settings: {reference.label()}")
    d = decide(outs, reference, grid, options.train, loo)
    log(f"refitted settings: {d.refit.settings.label()} (cost on the corrections {d.refit.cost:.3f}, 1 = the base)")
    metrics: dict = {"fit_cost": d.refit.cost}
    if d.fit is not d.refit:
        if d.refit.settings != reference:
            log(f"the refitted settings do not hold on the held-out corrections (cost {d.refit.loo_cost:.3f}): "
                f"the head trains under the model's own settings")
        metrics["refit_held_out_cost"] = d.refit.loo_cost
    if d.skipped == SKIP_ONE:
        log("one correction: head training cannot be checked on a held-out character, so it is skipped "
            "(in the benchmark it made one-character adaptations worse)")
    elif d.skipped == SKIP_GEODESIC:
        log("the refitted settings use the geodesic falloff alone: the network is not used, no head training")
    G = ckpt = None
    if d.loo is not None:
        metrics.update(held_out_by_steps={str(n): c for n, c in d.loo.mean.items()}, steps_chosen=d.steps)
        log("held-out cost by head training steps: " + ", ".join(f"{n}: {c:.3f}" for n, c in d.loo.mean.items()))
        if d.steps == 0:
            log("head training did not help on the held-out corrections: the refitted settings alone are used")
        elif not d.refused:
            from backend.training.adapt import TrainOptions, case_sample, train_head

            G, info = train_head(head["G0"], [case_sample(c) for c in cases], [c.model_blend for c in cases],
                                 d.settings, head["replay"], replay_blend, TrainOptions(steps=d.steps))
            ckpt = head["ckpt"]
            metrics.update({k: v for k, v in info.items() if isinstance(v, (int, float))})
            log(f"head trained: {info['steps']} steps ({info['replay_steps']} replay) in "
                f"{info['train_seconds']:.0f} s")
    settings = d.settings
    held = d.held_out_cost
    if held is not None:
        metrics["held_out_cost"] = held
        log(f"held-out corrections (leave-one-out): cost {held:.3f} (1 = the base)")
    if d.unchanged:
        msg = (f"unchanged: no setting beat the base by {100 * MIN_GAIN:.0f} % on average and on every "
               f"correction; nothing published. To try: {_advice(k)}")
        return _finish(out, AdaptResult("unchanged", msg, reference.as_dict(), metrics))
    if d.refused:
        msg = (f"refused: on the corrections held out in turn the adapted model is not clearly better than the "
               f"base (cost {held:.3f}, {MAX_HELD_OUT_COST:g} needed; 1 = the base), so it would not carry to "
               f"this studio's other characters; nothing "
               f"published. To try: {_advice(k)}")
        return _finish(out, AdaptResult("refused", msg, settings.as_dict(), metrics))
    base_meta = get_metadata(onnx.load(str(model), load_external_data=False))
    rt = runtime_settings(settings, base_meta)
    if options.guard_rigs > 0 and data is not None:
        from backend.training.data import list_rigs

        paths = list_rigs(Path(data) / "val")
        paths = paths[:: max(len(paths) // options.guard_rigs, 1)][: options.guard_rigs]
        val = [load_npz(p) for p in paths]
        vcases = [cached_case(p, r, predictor, cache) for p, r in zip(paths, val)]
        vnet = net if G is None else _torch_net(G)
        old = validation_l1(lambda i: full_weights(rig_outputs(vcases[i], net, [reference.diffuse], smooth),
                                                   reference), val)
        new = validation_l1(lambda i: full_weights(rig_outputs(vcases[i], vnet, [settings.diffuse], smooth),
                                                   settings), val)
        falloff = validation_l1(lambda i: full_weights(rig_outputs(vcases[i], net, [0.0], smooth), FALLOFF), val)
        bar = max(old * (1.0 + options.collapse), falloff)
        metrics.update(val_old=old, val_new=new, val_falloff=falloff)
        log(f"training artists' validation ({len(val)} rigs) per-vertex L1: {old:.4f} -> {new:.4f} "
            f"(collapse above {bar:.4f})")
        if new > bar:
            msg = (f"refused: the adapted model collapses on the training artists' validation rigs (per-vertex "
                   f"L1 {old:.4f} -> {new:.4f}: more than {100 * options.collapse:.0f} % worse and worse than the "
                   f"model-free geodesic falloff, {falloff:.4f}); nothing published. "
                   f"To try: {'fewer --steps, or ' if G is not None else ''}a larger --collapse if this "
                   f"studio's style is far from the training artists'")
            return _finish(out, AdaptResult("refused", msg, settings.as_dict(), metrics))
    if options.dry_run:
        return _finish(out, AdaptResult("evaluated", "dry run: the adapted model passed the guard; nothing "
                                        "published", settings.as_dict(), metrics))
    card = {"created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "base": {"onnx": str(model), "sha256": model_store.file_sha256(model)},
            "style": settings.label(), "style_settings": settings.as_dict(), "trained": G is not None,
            "corrections": [c.card_entry() for c in corrections], "metrics": metrics, "options": asdict(options),
            **rt}
    mv = publish_version(Path(models), model, base_ckpt, rt, card, G, ckpt, options.activate)
    msg = f"published {mv.onnx} ({settings.label()})" + (" and now in use" if options.activate else "")
    return _finish(out, AdaptResult("published", msg, settings.as_dict(), metrics, mv.version))


def _torch_net(G):
    from backend.training.adapt import torch_net

    return torch_net(G)


def _feature_config(ckpt: dict):
    """The FeatureConfig a generator checkpoint was trained with."""
    from backend.features.pipeline import FeatureConfig

    return FeatureConfig(**ckpt["feature_config"])


def _finish(out: Path, result: AdaptResult) -> AdaptResult:
    out.mkdir(parents=True, exist_ok=True)
    model_store.write_json_atomic(out / "report.json", asdict(result))
    return result
