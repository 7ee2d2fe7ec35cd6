"""Publishing a new model version into the models folder (backend.inference.model_store); no torch
at import (``adapt`` publishes settings-only versions without it).

:func:`write_version` is the one way a version is written (``finetune`` through :func:`publish`,
``adapt`` through backend.training.adapt_command.publish_version): a model in use that no card
knows is kept as a version first, the number N is reserved (:func:`reserve_version`), the version's
files are written (``autoskin-vN.pth``, ``.onnx``, the markdown card, then the JSON card last: a
version without it is incomplete and never listed), and nothing of it is left when any step fails;
then, if asked, it becomes the model in use.

A fine-tuned version keeps the run-time settings of the model in use (:func:`settings_in_use`), which
are also the settings fine-tuning scores it with (backend.training.runtime_score).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional

from backend.features.pipeline import FEATURE_VERSION, FeatureConfig
from backend.inference import model_store
from backend.inference.runtime_settings import RuntimeSettings


def fmt(x: Optional[float]) -> str:
    """A figure of the card and the log: 4 decimals, "n/a" for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def settings_label(s: dict) -> str:
    """The run-time settings of a card in words."""
    rule = s.get("prior_blend_rule")
    if rule:
        blend = "per-rig blend rule (" + ", ".join(f"{k} {v:g}" for k, v in rule.items() if k != "kind") + ")"
    else:
        blend = f"prior blend {s['prior_blend']:g}"
    enclosing = s.get("enclosing_pieces", 0.0)
    pieces = f", pieces under {enclosing:g} of the surface to the bone they enclose" if enclosing else ""
    return (f"{blend}, geodesic share {s['geodesic_share']:g}, smooth {s['smooth']}, diffuse {s['diffuse']:g} %, "
            f"sharpen {s['sharpen']:g}{pieces}")


def card_text(card: dict) -> str:
    """The human model card (markdown) of a fine-tuned version."""
    m = card["metrics"]
    val_old, val_new = m["val_old"], m["val_new"]
    lines = [f"# Auto Skin model v{card['version']}", "",
             f"Fine-tuned {card['created']} from `{card['base']['checkpoint']}` "
             f"(model version {card['base'].get('model_version') or 'unknown'}) on {len(card['corrections'])} "
             f"artist correction(s), replay share {card['options']['replay_share']}, changed-vertex weight "
             f"{card['options']['changed_weight']}, {card['training']['steps']} steps.", "",
             f"Run-time settings (kept from the model in use): {settings_label(card)}. The figures score the "
             "weights the runtime gives with them.", "",
             "| per-vertex L1 | old | new |", "|---|---|---|",
             f"| validation ({val_old['rigs']} rigs) | {fmt(val_old['l1'])} | {fmt(val_new['l1'])} |",
             f"| corrections, all vertices | {fmt(m['corr_old']['l1'])} | {fmt(m['corr_new']['l1'])} |",
             f"| corrections, changed vertices | {fmt(m['corr_old']['l1_focus'])} | "
             f"{fmt(m['corr_new']['l1_focus'])} |"]
    h = m.get("holdout")
    if h and "folds" in h:
        lines.append(f"| corrections held out ({len(h['folds'])} folds) | {fmt(h['old_l1'])} | {fmt(h['new_l1'])} |")
    if "deform_mean" in val_old:
        lines.append(f"| validation deformation error, % of the size | {fmt(val_old['deform_mean'])} | "
                     f"{fmt(val_new['deform_mean'])} |")
    lines += ["", f"Validation tolerance: {card['options']['tolerance']} (change {m['val_delta']:+.4f}).", "",
              "## Corrections learned", "", "| file | sha256 | vertices | changed | exported from |",
              "|---|---|---|---|---|"]
    for c in card["corrections"]:
        lines.append(f"| {c['file']} | `{c['sha256'][:16]}` | {c['vertices']} | {c['changed_vertices']} | "
                     f"{c['source_file']} ({c['model_version'] or '?'}) |")
    if card.get("skipped"):
        lines += ["", "## Skipped files", ""] + [f"- {s}" for s in card["skipped"]]
    lines += ["", f"Files: `{card['onnx']}` (sha256 `{card['onnx_sha256'][:16]}`), `{card['checkpoint']}`.", ""]
    return "\n".join(lines)


def reserve_version(folder: Path) -> int:
    """Claim the next free version number by creating its ``.md`` exclusively (two runs publishing at
    once get different numbers); the card replaces the placeholder at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        n = model_store.next_version(folder)
        try:
            fd = os.open(model_store.version_paths(folder, n)["md"], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.write(fd, b"# incomplete: being published\n")
        os.close(fd)
        return n


def settings_in_use(models_dir: Path) -> RuntimeSettings:
    """The run-time settings stored in ``models_dir/autoskin.onnx`` (the model in use), each checked
    (backend.inference.model_meta.read_runtime_settings: ModelError naming the file and the key for an
    invalid one); the defaults when there is no model in use. A fine-tuned version is scored with
    them and keeps them."""
    import onnx

    from backend.export.metadata import get_metadata
    from backend.inference.model_meta import read_runtime_settings

    cur = Path(models_dir) / model_store.CURRENT_NAME
    meta = get_metadata(onnx.load(str(cur), load_external_data=False)) if cur.is_file() else {}
    return read_runtime_settings(meta, cur)


def write_version(models_dir: Path, write: Callable[[int, dict[str, Path]], dict], text: Callable[[dict], str],
                  activate: bool = True) -> model_store.ModelVersion:
    """Publish version N: ``write(N, paths)`` writes its checkpoint and ONNX into ``paths``
    (model_store.version_paths) and returns its card; the markdown card ``text(card)`` and the JSON card
    follow. On any failure no file of N is left. ``activate``: then make N the model in use."""
    models_dir = Path(models_dir)
    model_store.register_current(models_dir)
    n = reserve_version(models_dir)
    paths = model_store.version_paths(models_dir, n)
    try:
        card = write(n, paths)
        model_store.write_text_atomic(paths["md"], text(card))
        model_store.write_json_atomic(paths["json"], card)
    except BaseException:
        for p in paths.values():  # leave no partial version behind
            if p.exists():
                p.unlink()
        raise
    if activate:
        model_store.activate(models_dir, n)
    return model_store.get_model(models_dir, n)


def publish(models_dir: Path, G, ckpt: dict, card: dict, export_method: str = "auto", activate: bool = True,
            settings: Optional[RuntimeSettings] = None) -> model_store.ModelVersion:
    """Publish the fine-tuned generator ``G`` (``ckpt``: the base checkpoint's dict, for its model and
    feature configs) as the next version with ``card``. Its ONNX carries the run-time ``settings``
    (None: :func:`settings_in_use`, read before anything is written), which the card repeats."""
    from backend.export.onnx_export import export_generator
    from backend.models.checkpoint import save_generator

    models_dir = Path(models_dir)
    settings = (settings_in_use(models_dir) if settings is None else settings).stored_values()

    def write(n: int, paths: dict[str, Path]) -> dict:
        summary = {"finetuned_from": card["base"]["checkpoint"], "corrections": len(card["corrections"]),
                   "val_l1": card["metrics"]["val_new"]["l1"], "version": n}
        save_generator(paths["pth"], G.state_dict(), ckpt["config"], ckpt["feature_config"], FEATURE_VERSION, summary)
        res = export_generator(G, paths["onnx"], FeatureConfig(**ckpt["feature_config"]), train_summary=summary,
                               model_version=f"autoskin-v{n}", method=export_method, **settings)
        return dict(card, version=n, onnx=paths["onnx"].name, onnx_sha256=model_store.file_sha256(paths["onnx"]),
                    checkpoint=paths["pth"].name, model_version=f"autoskin-v{n}", **settings,
                    export={"method": res.method, "max_abs_diff": res.max_abs_diff, "bytes": res.size_bytes})

    return write_version(models_dir, write, card_text, activate)
