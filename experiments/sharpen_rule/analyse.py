"""Fixed sharpening powers against per-rig rules on the rows of collect.py (mean of per-domain means).

    PYTHONPATH=. python experiments/sharpen_rule/analyse.py runs/sharpen_rule/rows.jsonl

A rule gives a rig power ``low`` when a cue is below a threshold and ``high`` otherwise. The rule is
chosen on four folds' domains and scored on the fifth's (nested leave-fold-out), so the figure of a
rule family is an honest held-out estimate; the objective is the mean of the relative L1 and relative
deformation against the fixed power 3 (the model's own setting).
"""
from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict

import numpy as np

CUES = ("top1", "entropy", "multi", "piece_share", "V")
POWERS = ("1.5", "2.0", "3.0", "4.0", "5.0")
REF = "3.0"


def domain_means(rows: list[dict], power_of) -> tuple[float, float]:
    """Mean over domains of the per-domain mean L1 and deformation, each rig at ``power_of(row)``."""
    per = defaultdict(list)
    for r in rows:
        s = r["scores"][power_of(r)]
        per[r["domain"]].append((s["l1"], s["deform_mean"]))
    m = np.array([np.mean(v, axis=0) for v in per.values()])
    return float(m[:, 0].mean()), float(m[:, 1].mean())


def best_rule(rows: list[dict]) -> tuple[tuple, float]:
    """The candidate rule with the lowest mean of L1 and deformation relative to the fixed power
    :data:`REF` on ``rows`` -> (its key, that cost)."""
    r1, rd = domain_means(rows, lambda r: REF)

    def cost(power_of) -> float:
        l1, de = domain_means(rows, power_of)
        return 0.5 * (l1 / r1 + de / rd)

    return min(((k, cost(fn)) for k, fn in candidates(rows)), key=lambda kv: kv[1])


def rule(cue: str, t: float, low: str, high: str):
    return lambda r: low if r["cues"][cue] < t else high


def candidates(rows: list[dict]):
    for cue in CUES:
        vals = sorted({r["cues"][cue] for r in rows})
        ts = np.quantile(vals, np.linspace(0.1, 0.9, 17))
        for t, (low, high) in itertools.product(ts, itertools.permutations(POWERS, 2)):
            yield (cue, float(t), low, high), rule(cue, float(t), low, high)


def main() -> None:
    rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
    folds = sorted({r["fold"] for r in rows})
    print(f"{len(rows)} rigs, {len({r['domain'] for r in rows})} domains, folds {folds}")
    print("\nfixed power: L1 / deform % (mean of domains)")
    for p in ("1.0",) + POWERS:
        l1, de = domain_means(rows, lambda r, p=p: p)
        print(f"  {p}: {l1:.3f} / {de:.3f}")
    best_rig = lambda r: min(POWERS, key=lambda p: r["scores"][p]["l1"])  # noqa: E731
    l1, de = domain_means(rows, best_rig)
    print(f"  best power per rig, read off the truth (a bound): {l1:.3f} / {de:.3f}")
    # nested: choose the rule on 4 folds, apply on the 5th
    chosen = {}
    for f in folds:
        train = [r for r in rows if r["fold"] != f]
        key, _ = best_rule(train)
        chosen[f] = key
        print(f"  fold {f}: chosen on the others {key}")
    applied = {id(r): rule(*chosen[r["fold"]])(r) for r in rows}
    l1, de = domain_means(rows, lambda r: applied[id(r)])
    print(f"\nrule chosen on the other folds, scored on each fold's domains: {l1:.3f} / {de:.3f}")
    key, c = best_rule(rows)
    l1, de = domain_means(rows, rule(*key))
    print(f"rule chosen on all folds: {key}: {l1:.3f} / {de:.3f} (cost {c:.3f})")


if __name__ == "__main__":
    main()
