"""Cross-validated scores over held-out domains: per domain, per kind, and their means.

Rows are ``evaluate``'s results.jsonl rows (one per rig and method). A domain's score is the mean
over its rigs; the headline is the mean of the per-domain means (every artist counts once, however
many characters it has), next to the mean over rigs.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

#: metrics reported by the cross-validation (key in the rows, header, digits)
CV_METRICS: tuple[tuple[str, str, int], ...] = (("l1", "L1", 3), ("deform_mean", "deform %", 3),
                                                ("dominant_acc", "dom. acc", 3))


def read_rows(path: str | Path) -> list[dict]:
    """The error-free method rows of a results.jsonl."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("method") is not None and not r.get("error"):
                rows.append(r)
    return rows


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def cv_scores(rows: list[dict], domains: dict[str, str], methods: list[str] | None = None) -> dict:
    """{method: {"domains": {d: {metric: mean, "rigs": n}}, "kinds": {k: {...}}, "domain_mean": {...},
    "rig_mean": {...}, "rigs": n}} over the rigs scored by every method (so methods are compared on
    the same characters). ``domains``: {file: domain}."""
    by_method: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        by_method[r["method"]][r["rig"]] = r
    methods = methods or list(by_method)
    common = set.intersection(*(set(by_method[m]) for m in methods)) if methods else set()
    out: dict[str, dict] = {}
    for m in methods:
        rigs = sorted(common)
        per_domain: dict[str, list[dict]] = defaultdict(list)
        per_kind: dict[str, list[dict]] = defaultdict(list)
        for rig in rigs:
            row = by_method[m][rig]
            per_domain[domains.get(rig, "<unlisted>")].append(row)
            per_kind[row.get("kind", "unknown")].append(row)

        def means(group: list[dict]) -> dict:
            d = {k: _mean([float(g[k]) for g in group if g.get(k) is not None]) for k, _, _ in CV_METRICS}
            d["rigs"] = len(group)
            return d

        dom = {d: means(g) for d, g in sorted(per_domain.items())}
        out[m] = {"domains": dom, "kinds": {k: means(g) for k, g in sorted(per_kind.items())},
                  "domain_mean": {k: _mean([v[k] for v in dom.values()]) for k, _, _ in CV_METRICS},
                  "rig_mean": means([by_method[m][r] for r in rigs]), "rigs": len(rigs)}
    return out


def _cell(x: float, digits: int) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def cv_markdown(scores: dict, labels: dict[str, str] | None = None, headline_only: bool = False) -> str:
    """Markdown tables: the headline means, then (unless ``headline_only``) L1 / deformation per
    domain and per kind."""
    labels = labels or {}
    methods = list(scores)
    name = [f"`{labels.get(m, m)}`" for m in methods]
    lines = ["| method | rigs | " + " | ".join(f"{h} (mean of domains)" for _, h, _ in CV_METRICS)
             + " | " + " | ".join(f"{h} (mean of rigs)" for _, h, _ in CV_METRICS) + " |",
             "|" + "---|" * (2 + 2 * len(CV_METRICS))]
    for m, n in zip(methods, name):
        s = scores[m]
        lines.append(f"| {n} | {s['rigs']} | " + " | ".join(_cell(s["domain_mean"][k], d) for k, _, d in CV_METRICS)
                     + " | " + " | ".join(_cell(s["rig_mean"][k], d) for k, _, d in CV_METRICS) + " |")
    for group, title in () if headline_only else (("domains", "domain"), ("kinds", "kind")):
        keys = sorted({g for m in methods for g in scores[m][group]})
        lines += ["", f"L1 / deformation % per {title}:", "",
                  f"| {title} | rigs | " + " | ".join(name) + " |", "|" + "---|" * (2 + len(methods))]
        for g in keys:
            first = scores[methods[0]][group].get(g, {})
            cells = [f"{_cell(scores[m][group][g]['l1'], 3)} / {_cell(scores[m][group][g]['deform_mean'], 2)}"
                     if g in scores[m][group] else "–" for m in methods]
            lines.append(f"| {g} | {first.get('rigs', 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
