"""Does the network need 10 000 simplified points, or do 6 000 (the training crop) do as well? (issue 26)

Every styles rig above the smallest budget is skinned by the cross-validation model of the fold that
held its domain out (model 3.1's run-time settings) at each vertex budget, and scored with the
evaluation's metrics; seconds are the prediction's wall time in this process.

  PYTHONPATH=. python experiments/vertex_budget/score.py --cv runs/cv/recipe --budgets 10000,8000,6000
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from backend.evaluation.adapt_run import cv_models
from backend.evaluation.runner import EvalConfig, evaluate_weights
from backend.inference.predictor import Predictor
from backend.io.npz import load_npz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--styles", type=Path, default=Path("../shared/data/styles"))
    ap.add_argument("--cv", type=Path, required=True)
    ap.add_argument("--cv-model", default="cv_rt-enc100.onnx")
    ap.add_argument("--budgets", default="10000,8000,6000")
    ap.add_argument("--out", type=Path, default=None, help="rows as JSON lines")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = [json.loads(x) for x in (args.styles / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["V"] > min(budgets)]
    per = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["domain"]):
        model, _ = cv_models(args.cv, args.cv_model, r["domain"])
        rig = load_npz(args.styles / r["file"])
        line = {"domain": r["domain"], "rig": r["file"], "V": r["V"]}
        for b in budgets:
            p = Predictor(model, threads=1, vertex_budget=b)
            t0 = time.perf_counter()
            w = np.asarray(p.predict(rig).weights, np.float32)
            secs = time.perf_counter() - t0
            m = evaluate_weights(rig, w, EvalConfig())
            line[str(b)] = (m["l1"], m["deform_mean"], secs)
            per[b].append((r["domain"], m["l1"], m["deform_mean"], secs))
        print(json.dumps(line), flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(line) + "\n")
    print("| budget | rigs | L1 (mean of rigs) | deform % | L1 (mean of domains) | deform % | seconds |")
    print("|---|---|---|---|---|---|---|")
    for b in budgets:
        x = per[b]
        doms = defaultdict(list)
        for d, l1, dm, _ in x:
            doms[d].append((l1, dm))
        dm_ = np.mean([np.mean(v, axis=0) for v in doms.values()], axis=0)
        print(f"| {b} | {len(x)} | {np.mean([v[1] for v in x]):.4f} | {np.mean([v[2] for v in x]):.4f} | "
              f"{dm_[0]:.4f} | {dm_[1]:.4f} | {np.mean([v[3] for v in x]):.2f} |")


if __name__ == "__main__":
    main()
