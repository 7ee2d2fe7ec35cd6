"""Score stopping / refusal rules on the rows of study.py: per domain the mean over draws of the test
rigs' change against the base (L1 and deformation, %), then the mean over domains and the worst domain.

  python experiments/adapt_guard/rules.py runs/adapt_guard/A/rows.jsonl runs/adapt_guard/B/rows.jsonl
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def change(row: dict, variant: str, stop: int | None) -> tuple[float, float]:
    """(ΔL1 %, Δdeform %) of the test rigs at ``stop`` steps (None = the base model)."""
    if stop is None:
        return 0.0, 0.0
    b, t = row["base"], row[variant]["test"][str(stop)]
    return 100.0 * (t[0] / b[0] - 1.0), 100.0 * (t[1] / b[1] - 1.0)


def rule_mean(margin: float = 0.0, every: bool = False, stops=None):
    """argmin of the mean held-out cost over ``stops``; the base unless that cost is below 1 - margin
    (``every``: and every held-out correction's cost below 1)."""
    def choose(v: dict) -> int | None:
        mean, each = v["loo_mean"], v["loo_each"]
        ok = [n for n in mean if (stops is None or int(n) in stops)
              and mean[n] < 1.0 - margin and (not every or max(each[n]) < 1.0)]
        return int(min(ok, key=lambda n: (mean[n], int(n)))) if ok else None
    return choose


def fixed(n: int):
    return lambda v: n


RULES = {
    "always 10 steps": fixed(10),
    "always 20 steps": fixed(20),
    "always 40 steps": fixed(40),
    "LOO mean < 1 (the command)": rule_mean(),
    "LOO mean < 0.9": rule_mean(0.1),
    "LOO mean < 0.8": rule_mean(0.2),
    "LOO every case < 1": rule_mean(every=True),
    "LOO every case < 1, mean < 0.9": rule_mean(0.1, every=True),
    "LOO every case < 1, head only": rule_mean(every=True, stops=(10, 20, 40)),
    "LOO mean < 0.9, head only": rule_mean(0.1, stops=(10, 20, 40)),
}


def main(paths: list[str]) -> None:
    rows = [json.loads(x) for p in paths for x in open(p) if x.strip()]
    for variant in ("refit", "fixed"):
        have = [r for r in rows if variant in r]
        if not have:
            continue
        rules = RULES if all("loo_mean" in r[variant] for r in have) else {
            n: f for n, f in RULES.items() if n.startswith("always")}  # one correction: nothing held out
        print(f"\n## variant {variant} ({len(have)} draws, {len({r['domain'] for r in have})} domains)\n")
        print("| rule | mean ΔL1 % | mean Δdeform % | worst domain (ΔL1 / Δdeform) | domains worse > 2 % |")
        print("|---|---|---|---|---|")
        for name, rule in rules.items():
            per = defaultdict(list)
            for r in have:
                stop = rule(r[variant])
                if stop is not None and str(stop) not in r[variant]["test"]:
                    stop = None
                per[r["domain"]].append(change(r, variant, stop))
            dom = {d: np.mean(v, axis=0) for d, v in per.items()}
            m = np.mean(list(dom.values()), axis=0)
            worst = max(dom, key=lambda d: max(dom[d]))
            bad = sum(1 for v in dom.values() if max(v) > 2.0)
            w = dom[worst]
            print(f"| {name} | {m[0]:+.1f} | {m[1]:+.1f} | {worst} {w[0]:+.1f} / {w[1]:+.1f} | {bad} |")
        per = defaultdict(list)
        for r in have:
            best = min(r[variant]["test"], key=lambda n: sum(change(r, variant, int(n))))
            per[r["domain"]].append(min(change(r, variant, int(best)), (0.0, 0.0), key=sum))
        m = np.mean([np.mean(v, axis=0) for v in per.values()], axis=0)
        print(f"| best stop per draw, seen on the tests (bound) | {m[0]:+.1f} | {m[1]:+.1f} | | |")
        shown = {n: rules[n] for n in ("always 10 steps", "LOO mean < 1 (the command)", "LOO mean < 0.8") if n in rules}
        print("\nper domain (ΔL1 / Δdeform %, stop chosen per draw):\n")
        print("| domain | " + " | ".join(shown) + " |\n|---|" + "---|" * len(shown))
        for d in sorted({r["domain"] for r in have}):
            rs = [r for r in have if r["domain"] == d]
            cells = []
            for rule in shown.values():
                st = [rule(r[variant]) for r in rs]
                ch = np.mean([change(r, variant, x) for r, x in zip(rs, st)], axis=0)
                cells.append(f"{ch[0]:+.1f} / {ch[1]:+.1f} ({', '.join('-' if x is None else str(x) for x in st)})")
            print(f"| {d} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
