"""Score every held-out styles rig under several clean-up variants with the fold model that never
saw its domain, and record per-rig cues the runtime could read (issue 23, item 5: post-network settings).

    PYTHONPATH=. python experiments/sharpen_rule/collect.py --cv runs/cv/recipe \
        --cv-model cv_rt-enc100.onnx --out runs/sharpen_rule/rows.jsonl
    # other clean-up settings: --variant NAME:key=value,... (keys: sharpen, prune, diffuse, enclosing_pieces, fade)
    PYTHONPATH=. python experiments/sharpen_rule/collect.py ... --variant p0:prune=0 --variant p02:prune=0.02

One JSON row per rig: domain, kind, cues, and {variant: {l1, deform_mean, ...}}; resumes by rig name.
Without --variant the variants are the sharpening powers 1-5, named by the power ("3.0"). ``fade``
is the influence limit's fade (backend.inference.postprocess.LIMIT_FADE), a study-only knob.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from backend.evaluation.runner import evaluate_weights
from backend.features.pieces import mesh_pieces, small_piece_share
from backend.inference.predictor import Predictor
from backend.io.npz import load_npz

POWERS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0)


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,...`` -> (NAME, {key: float})."""
    name, _, body = text.partition(":")
    values = {k: float(v) for k, v in (kv.split("=") for kv in body.split(",") if kv)}
    unknown = set(values) - {"sharpen", "prune", "diffuse", "enclosing_pieces", "fade"}
    if not name or unknown:
        raise SystemExit(f"--variant {text!r}: NAME:key=value,... with keys sharpen, prune, diffuse, "
                         f"enclosing_pieces, fade")
    return name, values


def with_fade(fade: float | None):
    """Set the influence limit's fade for the calls that follow (None: the module's own)."""
    from backend.inference import postprocess as pp

    base = getattr(pp, "_study_limit", pp.limit_influences)
    pp._study_limit = base
    pp.limit_influences = base if fade is None else (lambda w, k, fade=fade: base(w, k, fade=fade))


def cues(rig, w1: np.ndarray) -> dict:
    """Per-rig quantities known at run time; ``w1`` (V, J) the prediction of the first variant (the
    sharpening study: without sharpening)."""
    count, _ = mesh_pieces(rig.faces, rig.num_vertices)
    top = np.sort(w1, axis=1)[:, ::-1]
    p = np.clip(w1, 1e-12, 1.0)
    entropy = -(w1 * np.log(p)).sum(axis=1)
    return {"V": int(rig.num_vertices), "J": int(rig.is_deform.sum()), "pieces": int(count),
            "piece_share": float(small_piece_share(rig.vertices, rig.faces)),
            "top1": float(top[:, 0].mean()), "top2": float(top[:, 1].mean()) if top.shape[1] > 1 else 0.0,
            "entropy": float(entropy.mean()), "multi": float((top[:, 1] > 0.05).mean()) if top.shape[1] > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", type=Path, required=True)
    ap.add_argument("--cv-model", default="cv_rt-enc100.onnx")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", action="append", default=[], help="NAME:key=value,... (repeatable)")
    ap.add_argument("--fold", action="append", default=[], help="only these fold views (fold0, ...; repeatable)")
    args = ap.parse_args()
    variants = dict(parse_variant(v) for v in args.variant) or {str(s): {"sharpen": s} for s in POWERS}
    first = next(iter(variants))
    done = set()
    if args.out.exists():
        done = {json.loads(line)["rig"] for line in args.out.read_text().splitlines() if line.strip()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    folds = sorted(p for p in (args.cv / "views").iterdir() if p.is_dir() and (not args.fold or p.name in args.fold))
    for view in folds:
        model = args.cv / view.name / args.cv_model
        manifest = {json.loads(x)["file"]: json.loads(x) for x in (view / "manifest.jsonl").read_text().splitlines()
                    if x.strip()}
        predictors = {n: (Predictor(model, threads=1, overrides={k: v for k, v in o.items() if k != "fade"}),
                          o.get("fade")) for n, o in variants.items()}
        for path in sorted((view / "heldout").glob("*.npz")):
            if path.name in done:
                continue
            rig = load_npz(path)
            row = {"rig": path.name, "fold": view.name, "domain": manifest.get(path.name, {}).get("domain"),
                   "kind": manifest.get(path.name, {}).get("kind"), "scores": {}}
            for name, (pred, fade) in predictors.items():
                with_fade(fade)
                w = pred.predict(rig).weights
                if name == first:
                    row["cues"] = cues(rig, np.asarray(w, np.float64))
                m = evaluate_weights(rig, w)
                row["scores"][name] = {"l1": m["l1"], "deform_mean": m["deform_mean"],
                                         "precision": m["precision"], "recall": m["recall"]}
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(path.name, row["cues"]["top1"], {k: round(v["l1"], 3) for k, v in row["scores"].items()}, flush=True)


if __name__ == "__main__":
    main()
