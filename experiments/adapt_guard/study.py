"""Which leave-one-out rule decides safely whether (and how long) to train the head? (issue 24)

For every draw of ``adapt-bench`` (k corrections of a styles domain, the fold model that never saw
the domain as base), two variants of ``adapt --train`` are run and *every* stop is scored on the
domain's other rigs, so any stopping / refusal rule can be judged afterwards without rerunning:

* ``refit``: the settings refit, then the head trained under the refitted settings (the command);
* ``fixed``: the head trained under the base model's own settings (no refit).

Per draw and variant the row holds the leave-one-correction-out cost of each stop (mean and each
case; 0 = no head training) and the test rigs' mean L1 / deformation at each stop (plus the base's).
Rows are appended to OUT/rows.jsonl as draws finish; a rerun skips draws already there.

  PYTHONPATH=. python experiments/adapt_guard/study.py --cv runs/cv/recipe --cv-model cv_rt-enc100.onnx \
      --domains dmobs,elceejo_mobs --draws 3 --out runs/adapt_guard/A
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path


from backend.evaluation.adapt_bench import Draw, load_domain_rigs, make_draws, read_domains, score_draw
from backend.evaluation.adapt_run import DomainCases, HeadTrainer, cv_models
from backend.evaluation.runner import EvalConfig
from backend.inference.predictor import Predictor
from backend.training.adapt import STOPS, case_sample, head_settings, loo_steps, torch_net, train_head
from backend.training.style import StyleFit, fit_style, full_weights, model_settings, rig_outputs, style_grid


def test_scores(cases: DomainCases, draw: Draw, max_tests: int, weights) -> tuple[float, float]:
    """(mean L1, mean deformation %) of ``weights(t)`` over the draw's first ``max_tests`` test rigs, as
    the benchmark scores them (``adapt_bench.score_draw``)."""
    return score_draw(cases.rigs, draw, weights, {}, "adapted", EvalConfig(), max_tests)


def run_variant(cases: DomainCases, trainer: HeadTrainer, draw: Draw, max_tests: int, fit: StyleFit) -> dict:
    """LOO costs per stop and test scores per stop for one variant (``fit`` gives its settings)."""
    cs = [cases.case(i) for i in draw.corrections]
    t0 = time.perf_counter()
    loo = (loo_steps(cs, fit, trainer.G, trainer.replay, trainer.replay_blend, trainer.options, cases.smooth)
           if len(cs) > 1 else None)
    loo_s = time.perf_counter() - t0
    tested = {0: test_scores(cases, draw, max_tests, lambda t: full_weights(cases.outputs(t), fit.settings))}
    s = head_settings(fit.settings)
    stops = [n for n in STOPS if 0 < n <= trainer.options.steps]
    snaps: dict[int, object] = {}
    train_head(trainer.G, [case_sample(c) for c in cs], [c.model_blend for c in cs], s, trainer.replay,
               trainer.replay_blend, trainer.options,
               on_step=lambda n, G: snaps.__setitem__(n, copy.deepcopy(G)) if n in stops else None)
    for n, G in snaps.items():
        net = torch_net(G)
        tested[n] = test_scores(cases, draw, max_tests,
                                lambda t, net=net: full_weights(rig_outputs(cases.case(t), net, [s.diffuse],
                                                                            cases.smooth), s))
    out = {"settings": fit.settings.label(), "test": {str(n): v for n, v in tested.items()}, "loo_seconds": loo_s}
    if loo is not None:
        out.update(loo_mean={str(n): c for n, c in loo.mean.items()}, loo_each={str(n): c for n, c in loo.each.items()},
                   loo_scores={str(n): v.tolist() for n, v in loo.scores.items()}, loo_base=loo.base.tolist(),
                   chosen=loo.best)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--styles", type=Path, default=Path("../shared/data/styles"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/rigs"))
    ap.add_argument("--cv", type=Path, required=True)
    ap.add_argument("--cv-model", default="cv_rt-enc100.onnx")
    ap.add_argument("--domains", type=lambda s: [x for x in s.split(",") if x], default=None)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--max-tests", type=int, default=6)
    ap.add_argument("--head", default=None,
                    help="comma list of parameter name parts to train instead of backend.training.adapt.HEAD")
    ap.add_argument("--lr", type=float, default=None, help="head learning rate instead of TrainOptions.lr")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.head:
        import backend.training.adapt as adapt_module

        adapt_module.HEAD = tuple(x for x in args.head.split(",") if x)
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    done = set()
    if rows_path.is_file():
        done = {(r["domain"], r["draw"]) for r in map(json.loads, rows_path.read_text().splitlines())}
    domains = read_domains(args.styles, 4, args.domains)
    for dom, files in domains.items():
        draws = make_draws([g for _, g in files], [args.k], args.draws)
        todo = [d for d in draws if (dom, d.seed) not in done]
        if not todo:
            continue
        model, ckpt = cv_models(args.cv, args.cv_model, dom)
        predictor = Predictor(model, threads=1)
        grid = style_grid(model_settings(predictor)[0])
        cases = DomainCases(load_domain_rigs([p for p, _ in files]), predictor, grid)
        ns = argparse.Namespace(base=None, steps=None, lr=args.lr, replay_every=None, data=args.data)
        trainer = HeadTrainer(ns, predictor, ckpt)
        for dr in todo:
            tests = dr.tests[: args.max_tests]
            base = test_scores(cases, dr, args.max_tests, lambda t, c=cases: full_weights(c.outputs(t), c.reference))
            fit = fit_style([cases.outputs(i) for i in dr.corrections], cases.reference, grid)
            fixed = StyleFit(cases.reference, cases.reference, 1.0, 1.0, [cases.reference] * len(dr.corrections))
            row = {"domain": dom, "draw": dr.seed, "corrections": [cases.rigs[i].name for i in dr.corrections],
                   "tests": len(tests), "base": base, "style_loo": fit.loo_cost,
                   "fixed": run_variant(cases, trainer, dr, args.max_tests, fixed)}
            if args.k > 1:  # with one correction the command keeps the base settings unless the refit gains a lot
                row["refit"] = run_variant(cases, trainer, dr, args.max_tests, fit)
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(dom, dr.seed, "base", base, {v: row[v]["test"] for v in ("refit", "fixed") if v in row}, flush=True)


if __name__ == "__main__":
    main()
