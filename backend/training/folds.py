"""Leave-domain-out folds over the styles data, and the data views they make.

A *domain* is one artist, studio, game or tool family (the ``domain`` column of
``styles/manifest.jsonl``; rigs of ``rigs/`` take their ``source``, every Quaternius pack being one
artist). Folds hold whole domains, so variants of one character never straddle a split. The
folds are fixed once in a committed JSON file (``configs/folds.json``)::

    {"folds": [["nssm_mobs"], ["dmobs", "xonotic", ...], ...], "seed_note": "..."}

A fold's view trains on ``rigs/train`` plus the styles of the other folds, stops early on
``rigs/val`` (the training artist's held-out families), and is scored on the held-out fold.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from backend.io.manifest import read_manifest
from backend.rig import RigError

#: the view's folders: what the trainer reads (train, val), what is scored (heldout), and test
VIEW_SPLITS = ("train", "val", "test", "heldout")


def rig_domain(row: dict) -> str:
    """The domain of a manifest row: ``domain`` if present, else its source with every
    Quaternius pack counted as one artist."""
    if row.get("domain"):
        return str(row["domain"])
    source = str(row.get("source", "unknown"))
    return "quaternius" if source.startswith("quaternius") else source


def make_folds(domain_sizes: dict[str, int], n_folds: int) -> list[list[str]]:
    """Domains dealt into ``n_folds`` folds balanced by rig count: the largest domain first, each to
    the fold with the fewest rigs so far (ties: the lower fold index; equal sizes: by name), so
    the result depends on the data only."""
    if n_folds < 1:
        raise RigError(f"the number of folds must be at least 1, got {n_folds}")
    if len(domain_sizes) < n_folds:
        raise RigError(f"{len(domain_sizes)} domains cannot fill {n_folds} folds")
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    totals = [0] * n_folds
    for name, size in sorted(domain_sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        f = min(range(n_folds), key=lambda i: (totals[i], i))
        folds[f].append(name)
        totals[f] += size
    return folds


def load_folds(path: str | Path) -> list[list[str]]:
    """The folds of a folds JSON file (a list of domain lists; no domain twice)."""
    path = Path(path)
    try:
        folds = json.loads(path.read_text())["folds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RigError(f"{path}: not a folds file ({type(exc).__name__}: {exc})") from None
    seen = Counter(d for fold in folds for d in fold)
    twice = sorted(d for d, n in seen.items() if n > 1)
    if twice:
        raise RigError(f"{path}: domains in more than one fold: {', '.join(twice)}")
    return [list(map(str, fold)) for fold in folds]


def plan_fold_view(rig_rows: list[dict], style_rows: list[dict], folds: list[list[str]],
                   holdout: int | None) -> dict[str, list[tuple[str, str]]]:
    """{split: [(source folder relative to the data root, file name)]} for one fold's view.

    train = rigs/train + the styles of every fold but ``holdout`` (all of them for None);
    val = rigs/val; test = rigs/test; heldout = the styles of fold ``holdout`` (empty for None).
    Styles domains missing from every fold are refused (a fold file made from other data)."""
    if holdout is not None and not 0 <= holdout < len(folds):
        raise RigError(f"fold {holdout} does not exist (the folds file has {len(folds)})")
    fold_of = {d: i for i, fold in enumerate(folds) for d in fold}
    missing = sorted({rig_domain(r) for r in style_rows} - set(fold_of))
    if missing:
        raise RigError(f"styles domains in no fold: {', '.join(missing)}")
    view: dict[str, list[tuple[str, str]]] = {k: [] for k in VIEW_SPLITS}
    for row in rig_rows:
        split = row.get("split")
        if split in ("train", "val", "test"):
            view[split].append((f"rigs/{split}", row["file"]))
    for row in style_rows:
        held = holdout is not None and fold_of[rig_domain(row)] == holdout
        view["heldout" if held else "train"].append(("styles", row["file"]))
    return view


def write_fold_view(data: str | Path, out: str | Path, folds: list[list[str]], holdout: int | None) -> dict[str, int]:
    """Write the view of :func:`plan_fold_view` under ``out``: a folder of symbolic links per split,
    ``manifest.jsonl`` (rigs and styles rows, each with its ``domain``), ``domains.json``
    ({file: domain}, read by training's domain balance) and ``view.json``. Returns the counts."""
    data, out = Path(data).resolve(), Path(out)
    rig_rows = read_manifest(data / "manifest.jsonl")
    style_rows = read_manifest(data / "styles" / "manifest.jsonl")
    names = Counter(r["file"] for r in rig_rows + style_rows)
    clash = sorted(n for n, c in names.items() if c > 1)
    if clash:
        raise RigError(f"file names in both rigs and styles: {', '.join(clash[:5])}")
    view = plan_fold_view(rig_rows, style_rows, folds, holdout)
    for split, items in view.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.npz"):
            old.unlink()
        for src, name in items:
            target = data / src / name
            if not target.is_file():
                raise RigError(f"{target}: listed in the manifest but missing")
            os.symlink(target, folder / name)
    rows = [{**r, "domain": rig_domain(r)} for r in rig_rows + style_rows]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "domains.json").write_text(json.dumps({r["file"]: r["domain"] for r in rows}, indent=0))
    counts = {k: len(v) for k, v in view.items()}
    by_file = {r["file"]: r for r in rows}
    licences = Counter(license_class(by_file[name]) for _, name in view["train"])
    about = {"data": str(data), "holdout_fold": holdout,
             "holdout_domains": folds[holdout] if holdout is not None else [], "counts": counts,
             "train_license_classes": dict(sorted(licences.items())),
             "train_domains": sorted({by_file[n]["domain"] for _, n in view["train"]})}
    (out / "view.json").write_text(json.dumps(about, indent=2))
    return counts


def license_class(row: dict) -> str:
    """A manifest row's licence class (styles rows carry one; rigs rows are classed from their
    licence text: CC0 / CC-BY / MIT are permissive)."""
    if row.get("license_class"):
        return str(row["license_class"])
    text = str(row.get("license", "")).upper()
    return "permissive" if any(t in text for t in ("CC0", "CC-BY-4", "CC-BY 4", "MIT")) else "unclear"


def domain_weights(names: list[str], domains: dict[str, str], power: float) -> list[float]:
    """Per-rig loss weights that balance domains: a rig of a domain with n rigs among ``names``
    weighs n ** -power, normalised to mean 1 (power 0: all 1; 1: every domain weighs the same).
    Files missing from ``domains`` form one domain of their own."""
    if not 0.0 <= power <= 1.0:
        raise RigError(f"data.domain_balance must be within 0..1, got {power}")
    if not names:
        return []
    of = [domains.get(n, "<unlisted>") for n in names]
    counts = Counter(of)
    w = [counts[d] ** -power for d in of]
    mean = sum(w) / len(w)
    return [x / mean for x in w]
