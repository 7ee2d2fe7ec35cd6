"""Adaptation benchmark: how much a model learns a studio's style from k of its characters.

For every domain (studio, artist, game) of a styles folder with enough rigs, draw k rigs as
corrections (whole asset families at a time, so variants of one character never sit on both
sides), adapt the base model to them, and score the domain's other rigs with the evaluation's
metrics (``runner.evaluate_weights``: per-vertex L1 and mean deformation) for the base model, the
adapted one and the model-free heat mode. Each adaptation is timed, preparation of its corrections
included. Methods (:data:`METHODS`): ``style`` refits the post-network settings
(backend.training.style); ``train`` also fine-tunes the generator first (backend.training.adapt).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from backend.evaluation.runner import EvalConfig, evaluate_weights
from backend.io.manifest import read_manifest
from backend.io.npz import load_npz
from backend.rig import RigError

METHODS = ("style", "train")
MIN_RIGS = 4


@dataclass
class Draw:
    """One draw of a domain: ``corrections`` and ``tests`` are indices into the domain's rig list."""

    k: int
    seed: int
    corrections: list[int]
    tests: list[int]


def read_domains(styles: str | Path, min_rigs: int = MIN_RIGS, only: Optional[Sequence[str]] = None
                 ) -> dict[str, list[tuple[Path, str]]]:
    """domain -> [(rig file, asset family)] from ``styles/manifest.jsonl``, domains with >= ``min_rigs``
    existing files (``only``: just these domains; RigError naming an unknown one)."""
    styles = Path(styles)
    manifest = styles / "manifest.jsonl"
    if not manifest.is_file():
        raise RigError(f"{styles}: no manifest.jsonl (a styles folder lists each rig's domain there)")
    found: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for row in read_manifest(manifest):
        path = styles / str(row.get("file", ""))
        if "domain" in row and path.is_file():
            found[str(row["domain"])].append((path, str(row.get("group") or path.stem)))
    if only:
        unknown = sorted(set(only) - set(found))
        if unknown:
            raise RigError(f"{styles}: no domain {', '.join(unknown)}; known: {', '.join(sorted(found))}")
        found = {d: found[d] for d in only}
    return {d: sorted(v) for d, v in sorted(found.items()) if len(v) >= min_rigs}


def make_draws(groups: Sequence[str], ks: Sequence[int], draws: int, seed: int = 0) -> list[Draw]:
    """``draws`` draws per k: families taken in a random order until k rigs are corrections (the last
    family may be cut); the rigs of untouched families are the tests. A k leaving no test is skipped."""
    out = []
    fams = sorted(set(groups))
    for k in ks:
        for d in range(draws):
            rng = np.random.default_rng([seed, k, d])
            corr: list[int] = []
            touched = set()
            for f in rng.permutation(len(fams)):
                if len(corr) >= k:
                    break
                members = [i for i, g in enumerate(groups) if g == fams[f]]
                corr += [int(i) for i in rng.permutation(members)[: k - len(corr)]]
                touched.add(fams[f])
            tests = [i for i, g in enumerate(groups) if g not in touched]
            if len(corr) == k and tests:
                out.append(Draw(k, d, sorted(corr), tests))
    return out


@dataclass
class DomainResult:
    """rows: one dict per (draw, method): domain, k, draw, method, tests, base/adapted/heat L1 and
    deformation (means over the draw's test rigs), seconds (the adaptation), settings."""

    domain: str
    rows: list = field(default_factory=list)


#: adapt(correction indices) -> (weights function for a test index, info dict with "settings")
Adapter = Callable[[list[int]], tuple[Callable[[int], np.ndarray], dict]]


def score_draw(rigs: list, draw: Draw, weights: Callable[[int], np.ndarray], cache: dict, key: str,
               config: EvalConfig, max_tests: int) -> tuple[float, float]:
    """(mean L1, mean deformation) of ``weights`` over the draw's first ``max_tests`` tests; results of a
    fixed method (``key`` "base", "heat") are cached per rig."""
    l1, dm = [], []
    for t in draw.tests[:max_tests]:
        ck = (key, t)
        if ck not in cache:
            row = evaluate_weights(rigs[t], weights(t), config)
            cache[ck] = (row["l1"], row["deform_mean"])
        l1.append(cache[ck][0])
        dm.append(cache[ck][1])
        if key not in ("base", "heat"):
            del cache[ck]
    return float(np.mean(l1)), float(np.mean(dm))


def bench_domain(domain: str, rigs: list, draws: Sequence[Draw], adapters: dict[str, Adapter],
                 base: Callable[[int], np.ndarray], heat: Callable[[int], np.ndarray],
                 config: EvalConfig = EvalConfig(), max_tests: int = 8, log=print) -> DomainResult:
    """Run every adapter on every draw of one domain."""
    res = DomainResult(domain)
    cache: dict = {}
    for dr in draws:
        b = score_draw(rigs, dr, base, cache, "base", config, max_tests)
        h = score_draw(rigs, dr, heat, cache, "heat", config, max_tests)
        for name, adapt in adapters.items():
            t0 = time.perf_counter()
            fn, info = adapt(dr.corrections)
            secs = time.perf_counter() - t0 + float(info.get("prepare_seconds", 0.0))
            a = score_draw(rigs, dr, fn, cache, name, config, max_tests)
            row = {"domain": domain, "k": dr.k, "draw": dr.seed, "method": name,
                   "corrections": [rigs[i].name for i in dr.corrections], "tests": len(dr.tests[:max_tests]),
                   "base_l1": b[0], "base_deform": b[1], "heat_l1": h[0], "heat_deform": h[1],
                   "l1": a[0], "deform": a[1], "seconds": secs,
                   **{k: v for k, v in info.items() if k != "prepare_seconds"}}
            res.rows.append(row)
            log(f"{domain} k={dr.k} draw {dr.seed} {name}: L1 {b[0]:.3f} -> {a[0]:.3f} (heat {h[0]:.3f}), "
                f"deform {b[1]:.3f} -> {a[1]:.3f} % (heat {h[1]:.3f}), {secs:.1f} s; {info.get('settings', '')}")
    return res


def change(new: float, old: float) -> float:
    """Relative change in % (negative = better)."""
    return 100.0 * (new - old) / max(old, 1e-12)


def summary_table(rows: list[dict]) -> str:
    """Markdown: per (method, k) one line per domain (means over draws) and the mean over domains,
    with the relative change against the base, and the worst domain."""
    lines = ["| method | k | domain | draws | tests | base L1 | adapted L1 | ΔL1 | heat L1 | base deform % | "
             "adapted deform % | Δdeform | heat deform % | s/adaptation |", "|" + "---|" * 14]
    for method in dict.fromkeys(r["method"] for r in rows):
        for k in sorted({r["k"] for r in rows if r["method"] == method}):
            sub = [r for r in rows if r["method"] == method and r["k"] == k]
            per = []
            for dom in dict.fromkeys(r["domain"] for r in sub):
                d = [r for r in sub if r["domain"] == dom]
                m = {c: float(np.mean([r[c] for r in d])) for c in
                     ("base_l1", "l1", "heat_l1", "base_deform", "deform", "heat_deform", "seconds", "tests")}
                m.update(domain=dom, draws=len(d), dl1=change(m["l1"], m["base_l1"]),
                         ddef=change(m["deform"], m["base_deform"]))
                per.append(m)
            mean = {c: float(np.mean([p[c] for p in per])) for c in per[0] if c not in ("domain",)}
            mean["domain"] = f"**mean of {len(per)}**"
            for p in per + [mean]:
                lines.append(f"| {method} | {k} | {p['domain']} | {p['draws']:.0f} | {p['tests']:.0f} | "
                             f"{p['base_l1']:.3f} | {p['l1']:.3f} | {p['dl1']:+.1f} % | {p['heat_l1']:.3f} | "
                             f"{p['base_deform']:.3f} | {p['deform']:.3f} | {p['ddef']:+.1f} % | "
                             f"{p['heat_deform']:.3f} | {p['seconds']:.1f} |")
            worst = max(per, key=lambda p: max(p["dl1"], p["ddef"]))
            lines.append(f"| {method} | {k} | worst: {worst['domain']} | | | | | {worst['dl1']:+.1f} % | | | | "
                         f"{worst['ddef']:+.1f} % | | |")
    return "\n".join(lines)


def load_domain_rigs(files: Sequence[Path]) -> list:
    """The domain's rigs; RigError naming a file without painted weights."""
    rigs = []
    for p in files:
        rig = load_npz(p)
        if rig.weights is None:
            raise RigError(f"{p}: has no painted weights to score against")
        rigs.append(rig)
    return rigs
