"""Write the model card (Markdown + JSON) of a shipped model from its run and its evaluations.

Example::

    python -m backend model-card --model models/autoskin.onnx --run runs/shipped \\
        --eval test=runs/eval_test_shipped --eval out_of_style=runs/eval_oos_shipped \\
        --ablation docs/history/ablation.md --notes docs/model_notes.md --train-command "python -m backend train ..."

writes ``models/MODEL_CARD.md`` and ``models/model_card.json`` beside the model (atomically).
The JSON holds, per evaluation and method, the mean of every metric over rigs (from the
evaluation's results.jsonl), so the numbers can be checked by re-running ``evaluate``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from collections import defaultdict
from pathlib import Path

from backend.inference.model_store import file_sha256
from backend.rig import RigError

NAME = "model-card"
HELP = "write models/MODEL_CARD.md + model_card.json from a training run and its evaluations"

METRICS = ("l1", "precision", "recall", "dominant_acc", "cosine", "mse", "deform_mean", "deform_max",
           "artefact_frac", "unweighted", "seconds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the shipped .onnx file")
    p.add_argument("--run", action="append", required=True,
                   help="training run folder (config.json, summary.json, log.jsonl); repeat it, in order, for a "
                        "model made in steps (a warm-started run after the one it started from); for an "
                        "ensemble, every member's runs (the member the card's config comes from last)")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=DIR",
                   help="an evaluate output folder (results.jsonl, summary.md); repeatable")
    p.add_argument("--ablation", action="append", default=[],
                   help="Markdown file with ablation tables (repeatable; included in order)")
    p.add_argument("--notes", default=None, help="Markdown file with known weaknesses (and pictures)")
    p.add_argument("--train-command", action="append", default=[],
                   help="the exact command that trained the model (repeatable: one per --run, in order)")
    p.add_argument("--earlier-card", default=None, metavar="JSON",
                   help="model_card.json of the model the first --run started from (--init): its training steps "
                        "come first in this card (their run folders need not exist any more)")
    p.add_argument("--data-view", default=None, help="view.json of the data view used for training")
    p.add_argument("--blend", default=None, help="blend-sweep JSON (--out of `python -m backend blend-sweep`) "
                   "that chose the model's prior blend on val")
    p.add_argument("--out", default=None, help="output folder (default: the model's folder)")


def aggregate(results_jsonl: Path) -> dict[str, dict]:
    """{method: {"rigs": n, metric: mean over rigs, "by_kind": {kind: {...}}, "unweighted_rigs": n}}."""
    rows = [json.loads(line) for line in results_jsonl.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("error")]
    by_method: dict[str, list] = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append(r)

    def means(rs: list[dict]) -> dict:
        out = {"rigs": len(rs)}
        for m in METRICS:
            vals = [float(r[m]) for r in rs if r.get(m) is not None]
            if vals:
                out[m] = sum(vals) / len(vals)
        out["unweighted_rigs"] = sum(1 for r in rs if r.get("unweighted", 0) > 0)
        return out

    agg = {}
    for method, rs in by_method.items():
        kinds: dict[str, list] = defaultdict(list)
        for r in rs:
            kinds[str(r.get("kind", "unknown"))].append(r)
        agg[method] = {**means(rs), "by_kind": {k: means(v) for k, v in sorted(kinds.items())}}
    return agg


def headline_table(agg: dict[str, dict]) -> str:
    head = ("| method | rigs | L1 ↓ | precision ↑ | recall ↑ | dominant acc ↑ | deform mean % ↓ | deform max % ↓ "
            "| rigs left unweighted ↓ |\n")
    head += "|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for method, a in agg.items():
        lines.append(f"| `{method}` | {a['rigs']} | {a.get('l1', float('nan')):.3f} | "
                     f"{a.get('precision', float('nan')):.3f} | "
                     f"{a.get('recall', float('nan')):.3f} | {a.get('dominant_acc', float('nan')):.3f} | "
                     f"{a.get('deform_mean', float('nan')):.2f} | {a.get('deform_max', float('nan')):.2f} | "
                     f"{a['unweighted_rigs']} |")
    return head + "\n".join(lines) + "\n"


def kind_table(agg: dict[str, dict]) -> str:
    kinds = sorted({k for a in agg.values() for k in a["by_kind"]})
    head = "| kind | method | rigs | L1 ↓ | deform mean % ↓ | deform max % ↓ |\n|---|---|---|---|---|---|\n"
    lines = []
    for k in kinds:
        for method, a in agg.items():
            b = a["by_kind"].get(k)
            if b:
                lines.append(f"| {k} | `{method}` | {b['rigs']} | {b.get('l1', float('nan')):.3f} | "
                             f"{b.get('deform_mean', float('nan')):.2f} | {b.get('deform_max', float('nan')):.2f} |")
    return head + "\n".join(lines) + "\n"


def earlier_steps(card_path: Path) -> list[dict]:
    """The training steps (``training.steps_in_order``) of an earlier model card, oldest first."""
    try:
        card = json.loads(card_path.read_text())
        steps = card["training"]["steps_in_order"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RigError(f"{card_path}: not a model card with training steps ({type(exc).__name__}: {exc})") from None
    if not isinstance(steps, list) or not all(isinstance(st, dict) and "run" in st for st in steps):
        raise RigError(f"{card_path}: training.steps_in_order is not a list of steps")
    return [dict(st) for st in steps]


def ensemble_members(meta: dict[str, str]) -> list[dict]:
    """The members listed in a model's metadata train_summary (``python -m backend ensemble``: path, weight,
    sha256, best_score each); [] for a single generator or an unreadable summary."""
    try:
        members = json.loads(meta.get("train_summary") or "{}").get("ensemble") or []
    except (ValueError, AttributeError):
        return []
    return [m for m in members if isinstance(m, dict)] if isinstance(members, list) else []


def training_step(run_dir: Path) -> dict:
    """One training run of the model: {"run", "config", "summary"} (summary {} while it has none)."""
    if not (run_dir / "config.json").is_file():
        raise RigError(f"{run_dir}: not a training run folder (no config.json)")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return {"run": run_dir, "config": json.loads((run_dir / "config.json").read_text()), "summary": summary}


def run(args: argparse.Namespace) -> int:
    from backend.io.atomic import atomic_path

    model = Path(args.model)
    run_dirs = [Path(r) for r in ([args.run] if isinstance(args.run, str) else args.run)]
    commands = [args.train_command] if isinstance(args.train_command, str) else list(args.train_command or [])
    commands = [c for c in commands if c]
    out = Path(args.out) if args.out else model.parent
    steps = [training_step(r) for r in run_dirs]
    config = steps[-1]["config"]  # the run that wrote the weights
    earlier = earlier_steps(Path(args.earlier_card)) if args.earlier_card else []
    current = [{"run": str(st["run"]), "command": c,
                **{k: st["summary"].get(k) for k in ("seconds", "steps", "best_score")},
                "init_generator": st["config"].get("run", {}).get("init_generator", "")}
               for st, c in zip(steps, commands + [""] * len(steps))]
    in_order = earlier + current
    seconds = sum(st.get("seconds") or 0 for st in in_order)
    total_steps = sum(st.get("steps") or 0 for st in in_order)
    view = json.loads(Path(args.data_view).read_text()) if args.data_view else None
    evals = {}
    for spec in args.eval:
        name, _, folder = spec.partition("=")
        evals[name] = {"folder": folder, "aggregate": aggregate(Path(folder) / "results.jsonl")}
    import onnxruntime as ort

    from backend.inference.model_meta import read_runtime_settings

    meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    settings = read_runtime_settings(meta, model)
    prior_blend, rule, sharpen, smooth, diffuse = (
        settings.prior_blend, settings.prior_blend_rule, settings.sharpen, settings.smooth, settings.diffuse)
    blend = json.loads(Path(args.blend).read_text()) if args.blend else None
    members = ensemble_members(meta)
    card = {
        "model": model.name,
        "prior_blend": prior_blend,
        "prior_blend_rule": rule.as_dict() if rule else None,
        "sharpen": sharpen,
        "smooth": smooth,
        "diffuse": diffuse,
        "enclosing_pieces": settings.enclosing_pieces,
        "blend_sweep": blend,
        "ensemble": members or None,
        "sha256": file_sha256(model),
        "size_bytes": model.stat().st_size,
        "command": " && ".join(st["command"] for st in in_order if st.get("command")),
        "config": config,
        "data_view": view,
        "training": {"seconds": seconds, "steps": total_steps,
                     **{k: steps[-1]["summary"].get(k) for k in ("best_score", "last_epoch", "world")},
                     "steps_in_order": in_order},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "evaluations": evals,
    }
    md = [f"# Model card: `{model.name}`", "",
          f"- file: `{model.name}`, {model.stat().st_size / 1e6:.2f} MB, sha256 `{card['sha256']}` "
          "(the runtime also checks the weights hash stored in the file's metadata)",
          f"- trained on {card['machine']['cpus']} CPU cores ({card['machine']['platform']}), "
          f"{seconds / 60:.1f} min, {total_steps} steps, seed {config.get('run', {}).get('seed')}"
          + (f", in {len(in_order)} steps: " + "; ".join(
              f"`{st['run']}` {(st.get('seconds') or 0) / 60:.1f} min" for st in in_order)
             if len(in_order) > 1 else ""),
          *([f"- an ensemble of {len(members)} generators (`python -m backend ensemble`, "
             "`backend/models/ensemble.py`): the runtime averages their predictions before the blend and the "
             "clean-up; members: " + "; ".join(
                 f"`{m.get('path')}` (share {float(m.get('weight', 0)):.2g}, "
                 f"sha256 `{str(m.get('sha256'))[:12]}…`)"
                 for m in members) + ". The training steps below are those of every member"] if members else []),
          *([f"- command: `{st['command']}`" for st in in_order if st.get("command")]
            or ["- command: see docs/model.md"]),
          (f"- prior blend per rig (metadata `prior_blend_rule`): the runtime weights are b x the generator's output + "
           f"(1 - b) x the prior it is given, with b = {rule.low:g} for one closed body, rising linearly to "
           f"{rule.high:g} "
           f"when {rule.saturation:g} of the surface lies in separate pieces each under {rule.small:g} of it "
           f"(`backend/inference/blend_rule.py`); a caller's fixed blend overrides it" if rule else
           f"- prior blend {prior_blend:g}: the runtime weights are {prior_blend:g} x the generator's output + "
           f"{1 - prior_blend:g} x the prior it is given (metadata `prior_blend`)"),
          *([f"- run-time sharpening (metadata `sharpen`): the weights are raised to the power {sharpen:g} and "
             "renormalised before the influence limit (`backend/inference/postprocess.py`)"] if sharpen != 1.0 else []),
          *([f"- run-time smoothing (metadata `smooth`): {smooth} Laplacian iterations over the mesh edges "
             "before the sharpening"] if smooth else []),
          *([f"- run-time diffusion (metadata `diffuse`): the weights are diffused over the surface with a reach of "
             f"{diffuse:g} % of the character's bounding-box diagonal before the sharpening, the same blur on a dense "
             "and a low-poly mesh (`diffuse_weights` in `backend/inference/postprocess.py`)"] if diffuse else []),
          *(["- enclosing pieces (metadata `enclosing_pieces`): after the clean-up, each separate piece "
             + ("(of a mesh with more than one)" if settings.enclosing_pieces >= 1.0 else
                f"under {settings.enclosing_pieces:g} of the surface")
             + " whose convex hull holds the midpoint of exactly one deform bone goes to that bone alone "
             "(`backend/inference/enclosed_bones.py`)"]
            if settings.enclosing_pieces else []),
          ""]
    if view and "train_license_classes" in view:
        lic = ", ".join(f"{k} ({n} rigs)" for k, n in view["train_license_classes"].items())
        md += ["## Data", "", f"Trained on {view['counts']['train']} labelled rigs of {len(view['train_domains'])} "
               f"domains ({', '.join(view['train_domains'])}): `rigs/train` and every `styles` domain "
               f"(`python -m backend data-view --folds ... --holdout-fold none`); stopped early on `rigs/val` "
               f"({view['counts']['val']}); reported on `rigs/test` ({view['counts']['test']}), which chose "
               "nothing.", "",
               f"Licence classes of the training rigs: {lic}. Check them before shipping a product built on this "
               "model (the styles manifest has each file's licence text).", ""]
    elif view:
        md += ["## Data", "",
               f"Data view (`python -m backend data-view`): held-out groups {view.get('holdout_groups')}, "
               f"counts {view.get('counts')}. Train on `train`, choose on `val`, report on `test`; `out_of_style` is "
               "never seen in training"
               + (" (it was used to choose the prior blend, see below)" if blend and blend.get("check") else "")
               + ".", ""]
    shown = ("model", "features", "loss", "optim", "stages", "data", "ablation")
    md += ["## Configuration", "", "```json", json.dumps({k: config[k] for k in config if k in shown}, indent=1),
           "```", ""]
    if blend:
        from backend.evaluation.blend import BlendSummary

        md += ["## Prior blend", "",
               f"`python -m backend blend-sweep` on {len(blend['rigs'])} rigs of `{blend.get('data', 'val')}`"
               + (f" and {len(blend['check']['rigs'])} rigs of `{blend.get('check_data')}`"
                  if blend.get("check") else "")
               + f"; rule: {blend.get('rule', 'one-standard-error rule')}; chosen: {blend['chosen']:g}.", "",
               BlendSummary.from_dict(blend).table(), ""]
        if blend.get("check"):
            md += [f"On `{blend.get('check_data')}`:", "", BlendSummary.from_dict(blend["check"]).table(), ""]
        if blend.get("piece_rule"):
            names = [blend.get("data", "val")] + ([blend.get("check_data")] if blend.get("check") else [])
            md += ["Per-rig rule (`--fit-rule`, same criterion): " + json.dumps(blend["piece_rule"]) + "; mean L1 "
                   + ", ".join(f"`{n}` {a:.3f} (fixed blend {b:.3f})" for n, a, b in
                               zip(names, blend["piece_rule_l1"], blend["fixed_blend_l1"])) + ".", ""]
    for name, ev in evals.items():
        md += [f"## Results: {name}", "", f"From `{ev['folder']}` (`python -m backend evaluate`; means over rigs).", "",
               headline_table(ev["aggregate"]), "", "Per kind:", "", kind_table(ev["aggregate"]), ""]
    ablations = [args.ablation] if isinstance(args.ablation, str) else list(args.ablation or [])
    if ablations:
        md += ["## Ablation", ""] + [t for a in ablations for t in (Path(a).read_text(), "")]
    if args.notes:
        md += ["## Known weaknesses", "", Path(args.notes).read_text(), ""]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model_card.json") as tmp:
        tmp.write_text(json.dumps(card, indent=1, default=str))
    with atomic_path(out / "MODEL_CARD.md") as tmp:
        tmp.write_text("\n".join(md))
    print(f"wrote {out / 'MODEL_CARD.md'} and {out / 'model_card.json'}")
    return 0
