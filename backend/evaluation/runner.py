"""The evaluate runner: methods x rigs -> one JSONL/CSV row per (rig, method) and a Markdown summary.

Rows are appended to ``results.jsonl`` as they are computed, so an interrupted run keeps what it
did (``resume=True`` skips the pairs already there). ``results.csv`` and ``summary.md`` are
rewritten atomically at the end (also after an interruption).
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from backend.evaluation.baselines import MethodFn
from backend.evaluation.deformation import DEFAULT_MAX_ANGLE_DEG, DEFAULT_POSES, deformation_error
from backend.evaluation.metrics import weight_metrics
from backend.io.atomic import atomic_path
from backend.io.npz import list_rig_files, load_npz
from backend.rig import Rig, RigError

#: (column, header, higher is better?, scale for display, digits)
SUMMARY_COLUMNS: list[tuple[str, str, Optional[bool], float, int]] = [
    ("l1", "L1 ↓", False, 1.0, 3),
    ("cosine", "cos ↑", True, 1.0, 3),
    ("mse", "MSE ↓", False, 1.0, 4),
    ("dominant_acc", "dom. acc ↑", True, 1.0, 3),
    ("precision", "prec ↑", True, 1.0, 3),
    ("recall", "rec ↑", True, 1.0, 3),
    ("dist_kl", "hist KL ↓", False, 1.0, 3),
    ("smooth_pred", "smooth (pred)", None, 1.0, 3),
    ("smooth_true", "smooth (true)", None, 1.0, 3),
    ("deform_mean", "deform mean % ↓", False, 1.0, 2),
    ("deform_max", "deform max % ↓", False, 1.0, 2),
    ("artefact_frac", "artefact % ↓", False, 100.0, 2),
    ("seconds", "s/rig", None, 1.0, 2),
]


@dataclass
class EvalConfig:
    num_poses: int = DEFAULT_POSES
    max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG
    seed: int = 0


@dataclass
class EvalOutcome:
    rows: list[dict] = field(default_factory=list)
    broken: list[dict] = field(default_factory=list)
    out_dir: Path = Path(".")
    interrupted: bool = False


def find_rig_files(data: str | Path) -> list[Path]:
    """Sorted .npz files of a folder (or the one file given). Raises RigError if there are none."""
    return list_rig_files(data, allow_file=True, what="folder or file")


def find_manifest(data: str | Path) -> Optional[Path]:
    """manifest.jsonl in the data folder or up to two folders above it (rigs/test -> data), else None."""
    d = Path(data).resolve()
    if d.is_file():
        d = d.parent
    for cand in (d, d.parent, d.parent.parent):
        m = cand / "manifest.jsonl"
        if m.is_file():
            return m
    return None


def load_manifest_kinds(path: str | Path) -> dict[str, str]:
    """file name -> kind from a manifest.jsonl (rows without both keys are ignored)."""
    from backend.io.manifest import read_manifest

    return {Path(str(row["file"])).name: str(row["kind"]) for row in read_manifest(path)
            if "file" in row and "kind" in row}


def evaluate_weights(rig: Rig, pred: np.ndarray, config: Optional[EvalConfig] = None) -> dict:
    """Weight metrics and deformation error of ``pred`` (V, J) against ``rig.weights``; ``config`` None:
    the default EvalConfig."""
    config = config if config is not None else EvalConfig()
    pred = np.asarray(pred, dtype=np.float32)
    if pred.shape != (rig.num_vertices, rig.num_bones):
        raise RigError(f"{rig.name}: the method returned weights of shape {pred.shape}, expected "
                       f"({rig.num_vertices}, {rig.num_bones})")
    if not np.all(np.isfinite(pred)):
        raise RigError(f"{rig.name}: the method returned NaN or inf weights")
    row = weight_metrics(rig, pred)
    row.update(deformation_error(rig, pred, config.num_poses, config.max_angle_deg, config.seed))
    return row


def run_method(fn: MethodFn, rig: Rig) -> tuple[np.ndarray, dict, float]:
    """Run one method on the rig without its weights; ((V, J) weights, info, seconds)."""
    t0 = time.perf_counter()
    out = fn(rig.without_weights())
    secs = time.perf_counter() - t0
    if isinstance(out, tuple):
        w, info = out
    else:
        w, info = out, {}
    return np.asarray(w, dtype=np.float32), dict(info), secs


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
    return rows


def run_evaluation(files: Iterable[str | Path], methods: list[tuple[str, MethodFn]], out_dir: str | Path,
                   kinds: Optional[dict[str, str]] = None, config: Optional[EvalConfig] = None,
                   resume: bool = False, pictures: int = 0, progress: bool = True,
                   data_label: str = "", on_pictures: Optional[Callable[[Rig, dict, Path], list]] = None,
                   ) -> EvalOutcome:
    """Evaluate every method on every rig file and write results.jsonl, results.csv, summary.md.

    A broken rig file is reported (in the summary and ``broken`` rows) and skipped; a method
    that raises on a rig gives a row with ``error``. ``pictures``: render the first N rigs.
    """
    from tqdm import tqdm

    files = [Path(f) for f in files]
    kinds = kinds or {}
    config = config if config is not None else EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    outcome = EvalOutcome(out_dir=out)
    done: set[tuple[str, str]] = set()
    if resume:
        for r in _read_jsonl(jsonl):
            (outcome.broken if r.get("method") is None else outcome.rows).append(r)
            if r.get("method") is not None and not r.get("error"):
                done.add((r["rig"], r["method"]))
        outcome.rows = [r for r in outcome.rows if not r.get("error")]
        outcome.broken = []
    else:
        jsonl.write_text("", encoding="utf-8")
    try:
        with jsonl.open("a", encoding="utf-8") as sink:
            bar = tqdm(files, desc="evaluate", unit="rig", disable=not progress)
            for idx, path in enumerate(bar):
                bar.set_postfix_str(path.name[:40])
                todo = [(label, fn) for label, fn in methods if (path.name, label) not in done]
                want_pics = idx < pictures
                if not todo and not want_pics:
                    continue
                try:
                    rig = load_npz(path)
                    if rig.weights is None:
                        raise RigError(f"{path}: has no ground-truth weights to evaluate against")
                except RigError as exc:
                    row = {"rig": path.name, "method": None, "error": str(exc)}
                    outcome.broken.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    tqdm.write(f"skipped: {exc}")
                    continue
                preds: dict[str, np.ndarray] = {}
                for label, fn in methods:
                    if (path.name, label) in done and not want_pics:
                        continue
                    row = {"rig": path.name, "kind": kinds.get(path.name, "unknown"), "method": label,
                           "V": rig.num_vertices, "J": rig.num_bones, "Jd": int(rig.is_deform.sum())}
                    try:
                        w, info, secs = run_method(fn, rig)
                        preds[label] = w
                        if (path.name, label) in done:
                            continue
                        row["seconds"] = secs
                        row.update(evaluate_weights(rig, w, config))
                        row.update(info)
                        row["error"] = None
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as exc:  # one method failing on one rig must not stop the run
                        row["error"] = f"{type(exc).__name__}: {exc}"
                        tqdm.write(f"{path.name} / {label}: {row['error']}")
                    outcome.rows.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                if want_pics and preds:
                    draw = on_pictures
                    if draw is None:
                        from backend.evaluation.pictures import rig_pictures as draw
                    draw(rig, preds, out / "figures")
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        write_csv(outcome.rows, out / "results.csv")
        write_summary(outcome, out / "summary.md", config, data_label)
    return outcome


def write_csv(rows: list[dict], path: Path) -> Path:
    """All rows as CSV (columns: union of keys in first-seen order), written atomically."""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            wr = csv.DictWriter(fh, fieldnames=cols)
            wr.writeheader()
            for r in rows:
                wr.writerow({k: r.get(k, "") for k in cols})
        tmp.chmod(0o644)
    return path


def _fmt(x: float, digits: int) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def aggregate_table(rows: list[dict]) -> str:
    """Markdown table: mean over rigs of every metric per method (rows without error only)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = ["method", "rigs"] + [h for _, h, _, _, _ in SUMMARY_COLUMNS] + ["unweighted verts (rigs)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        ok = [r for r in rows if r["method"] == m and not r.get("error")]
        failed = sum(1 for r in rows if r["method"] == m and r.get("error"))
        cells = [f"`{m}`", f"{len(ok)}" + (f" (+{failed} failed)" if failed else "")]
        for key, _, _, scale, digits in SUMMARY_COLUMNS:
            vals = [float(r[key]) for r in ok if r.get(key) is not None]
            cells.append(_fmt(scale * float(np.mean(vals)) if vals else float("nan"), digits))
        unw = [int(r.get("unweighted", 0)) for r in ok]
        cells.append(f"{sum(unw)} ({sum(1 for u in unw if u > 0)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(outcome: EvalOutcome, path: Path, config: EvalConfig, data_label: str = "") -> Path:
    """summary.md: overall table, one table per kind, bone-heat silent failures, broken files, errors."""
    rows = outcome.rows
    rigs = sorted({r["rig"] for r in rows})
    parts = [f"# Evaluation{' of ' + data_label if data_label else ''}", "",
             f"{len(rigs)} rigs, {config.num_poses} random poses per rig (each bone up to "
             f"{config.max_angle_deg:g}°, seed {config.seed}). Means over rigs; metrics are defined in "
             "docs/evaluation.md. `unweighted verts (rigs)`: vertices with artist weight that the method "
             "left with none, summed over rigs (rigs affected).", ""]
    if outcome.interrupted:
        parts += ["**Interrupted**: partial results.", ""]
    if rows:
        parts += ["## All rigs", "", aggregate_table(rows), ""]
        kinds = sorted({r.get("kind", "unknown") for r in rows})
        if len(kinds) > 1 or kinds != ["unknown"]:
            for k in kinds:
                sub = [r for r in rows if r.get("kind", "unknown") == k]
                n = len({r["rig"] for r in sub})
                parts += [f"## kind: {k} ({n} rigs)", "", aggregate_table(sub), ""]
    heat = [r for r in rows if r["method"] == "boneheat" and not r.get("error")]
    if heat:
        unw = [int(r.get("boneheat_unweighted", r.get("unweighted", 0))) for r in heat]
        parts += ["## Bone heat silent failures", "",
                  f"{sum(unw)} unweighted vertices (as reported by Blender) over {sum(1 for u in unw if u > 0)} of "
                  f"{len(heat)} rigs; {sum(1 for r in heat if r.get('boneheat_failed'))} rigs flagged failed.", ""]
        for r, u in zip(heat, unw):
            if u > 0:
                parts.append(f"- {r['rig']}: {u} of {r['V']} vertices unweighted")
        parts.append("")
    errs = [r for r in rows if r.get("error")]
    if outcome.broken or errs:
        parts += ["## Skipped", ""]
        parts += [f"- broken file {r['rig']}: {r['error']}" for r in outcome.broken]
        parts += [f"- {r['rig']} / {r['method']}: {r['error']}" for r in errs]
        parts.append("")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
        tmp.chmod(0o644)
    return path
