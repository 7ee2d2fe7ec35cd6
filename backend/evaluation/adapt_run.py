"""The ``adapt-bench`` command's run: load the base model, prepare each domain's rigs once, run the
adapters (backend.evaluation.adapt_bench) and write OUT/results.jsonl and OUT/summary.md."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from backend.evaluation.adapt_bench import Adapter, Draw, bench_domain, load_domain_rigs, summary_table
from backend.io.atomic import atomic_path
from backend.training.adapt_decision import decide
from backend.training.style import (RigOutputs, full_weights, grid_diffuses, model_settings, onnx_net, prepare_case,
                                    rig_outputs, style_grid)


class DomainCases:
    """The rigs of one domain as the base model sees them: cases and base outputs made on first use
    and kept, with the seconds each took (an adaptation is charged for its corrections')."""

    def __init__(self, rigs: list, predictor, grid: list):
        self.rigs = rigs
        self.predictor = predictor
        self.reference, self.smooth = model_settings(predictor)
        self.diffuses = grid_diffuses(grid)
        self.net = onnx_net(predictor)
        self.cases: dict[int, object] = {}
        self.outs: dict[int, RigOutputs] = {}
        self.seconds: dict[int, float] = {}

    def case(self, i: int):
        if i not in self.cases:
            t0 = time.perf_counter()
            self.cases[i] = prepare_case(self.rigs[i], self.predictor)
            self.seconds[i] = self.seconds.get(i, 0.0) + time.perf_counter() - t0
        return self.cases[i]

    def outputs(self, i: int) -> RigOutputs:
        if i not in self.outs:
            case = self.case(i)
            t0 = time.perf_counter()
            self.outs[i] = rig_outputs(case, self.net, self.diffuses, self.smooth)
            self.seconds[i] += time.perf_counter() - t0
        return self.outs[i]


def style_adapter(cases: DomainCases, grid: list) -> Adapter:
    """Refit the post-network settings on the corrections, as ``adapt --no-train`` decides
    (backend.training.adapt_decision): a refused refit keeps the base settings."""

    def adapt(corr: list[int]):
        outs = [cases.outputs(i) for i in corr]
        prep = sum(cases.seconds[i] for i in corr)
        d = decide(outs, cases.reference, grid, False, loo=None)
        settings = d.kept()
        info = {"settings": settings.label(), "fit_cost": d.refit.cost, "loo_cost": d.refit.loo_cost,
                "refused": d.refused, "prepare_seconds": prep}
        return (lambda t: full_weights(cases.outputs(t), settings)), info

    return adapt


def cv_models(cv_dir: Path, model_name: str, domain: str) -> tuple[Path, Path]:
    """(ONNX model, generator checkpoint) of the ``cv`` fold that held ``domain`` out (the folds file
    named in cv_dir/cv_config.json)."""
    from backend.rig import RigError
    from backend.training.folds import load_folds

    config = Path(cv_dir) / "cv_config.json"
    if not config.is_file():
        raise RigError(f"--cv {cv_dir}: no cv_config.json (not a `cv` output folder)")
    folds = load_folds(json.loads(config.read_text())["folds"])
    hits = [f for f, doms in enumerate(folds) if domain in doms]
    if not hits:
        raise RigError(f"--cv {cv_dir}: domain {domain!r} is in no fold of its folds file")
    fold = Path(cv_dir) / f"fold{hits[0]}"
    return fold / model_name, fold / "best_generator.pt"


class HeadTrainer:
    """The base checkpoint and replay rigs of the ``train`` method, loaded once."""

    def __init__(self, args: argparse.Namespace, predictor, base: Path | None = None):
        from backend.inference import model_store
        from backend.training.adapt import TrainOptions, replay_samples
        from backend.training.finetune import load_base

        base = base or args.base or model_store.current_checkpoint(model_store.DEFAULT_FOLDER)
        self.G, ckpt = load_base(base)
        from backend.features.pipeline import FeatureConfig
        from backend.rig import RigError

        if FeatureConfig(**ckpt["feature_config"]).key() != predictor.model.info.feature_config.key():
            raise RigError(f"{base}: its feature config is not the model's; give the checkpoint of that model (--base)")
        given = {k: getattr(args, k, None) for k in ("steps", "lr", "replay_every")}
        self.options = TrainOptions(**{k: v for k, v in given.items() if v is not None})
        self.replay = replay_samples(args.data, predictor.model.info.feature_config) if args.data else []
        self.replay_blend = float(predictor.model.info.settings.prior_blend)


def train_adapter(cases: DomainCases, grid: list, trainer: HeadTrainer) -> Adapter:
    """As ``adapt`` (head training on): the decision of backend.training.adapt_decision, then the head
    trained for the chosen steps on all corrections; a refused version keeps the base model."""
    from backend.training.adapt import TrainOptions, case_sample, loo_steps, torch_net, train_head

    def adapt(corr: list[int]):
        outs = [cases.outputs(i) for i in corr]
        prep = sum(cases.seconds[i] for i in corr)
        cs = [cases.case(i) for i in corr]
        d = decide(outs, cases.reference, grid, True,
                   loo=lambda fit: loo_steps(cs, fit, trainer.G, trainer.replay, trainer.replay_blend,
                                             trainer.options, cases.smooth))
        info = {"fit_cost": d.fit.cost, "loo_cost": d.refit.loo_cost, "prepare_seconds": prep,
                "steps_chosen": d.steps, "refused": d.refused, "settings": d.kept().label()}
        if d.loo is not None:
            info.update(held_out_by_steps={str(n): c for n, c in d.loo.mean.items()},
                        held_out_each={str(n): c for n, c in d.loo.each.items()})
        if d.refused or d.steps == 0:
            settings = d.kept()
            return (lambda t: full_weights(cases.outputs(t), settings)), info
        G, more = train_head(trainer.G, [case_sample(c) for c in cs], [c.model_blend for c in cs], d.settings,
                             trainer.replay, trainer.replay_blend,
                             TrainOptions(**{**trainer.options.__dict__, "steps": d.steps}))
        net = torch_net(G)

        def weights(t: int) -> np.ndarray:
            return full_weights(rig_outputs(cases.case(t), net, [d.settings.diffuse], cases.smooth), d.settings)

        return weights, dict(info, **more)

    return adapt


def run_bench(args: argparse.Namespace, domains: dict, plan: dict[str, list[Draw]], out: Path,
              log: Callable[[str], None] = print) -> int:
    """Benchmark every domain of ``plan``; rows appended to OUT/results.jsonl, table in OUT/summary.md."""
    from backend.inference import model_store
    from backend.inference.predictor import Predictor

    cv = getattr(args, "cv", None)
    default = args.model or (Path(model_store.DEFAULT_FOLDER) / model_store.CURRENT_NAME)
    predictors: dict[Path, Predictor] = {}
    trainers: dict[Path, HeadTrainer] = {}
    heat = Predictor(mode="heat")
    rows: list[dict] = []
    jsonl = out / "results.jsonl"
    jsonl.write_text("", encoding="utf-8")
    model = f"the model of the cv fold that held each domain out ({cv}/fold<N>/{args.cv_model})" if cv else default
    log(f"base model {model}; {len(plan)} domains")
    for dom, draws in plan.items():
        if not draws:
            log(f"{dom}: no draw leaves a rig to score, skipped")
            continue
        model_path, ckpt = cv_models(cv, args.cv_model, dom) if cv else (default, None)
        if model_path not in predictors:
            predictors[model_path] = Predictor(model_path, threads=1)
        predictor = predictors[model_path]
        grid = style_grid(model_settings(predictor)[0])
        rigs = load_domain_rigs([p for p, _ in domains[dom]])
        cases = DomainCases(rigs, predictor, grid)
        adapters: dict[str, Adapter] = {}
        if "style" in args.methods:
            adapters["style"] = style_adapter(cases, grid)
        if "train" in args.methods:
            if model_path not in trainers:
                trainers[model_path] = HeadTrainer(args, predictor, ckpt)
            adapters["train"] = train_adapter(cases, grid, trainers[model_path])
        res = bench_domain(dom, rigs, draws, adapters,
                           base=lambda t: full_weights(cases.outputs(t), cases.reference),
                           heat=lambda t: np.asarray(heat.predict(rigs[t]).weights, np.float32),
                           max_tests=args.max_tests, log=log)
        for r in res.rows:
            r["base_model"] = str(model_path)
        with jsonl.open("a", encoding="utf-8") as fh:
            for r in res.rows:
                fh.write(json.dumps(r) + "\n")
        rows += res.rows
    if not rows:
        log("nothing was scored")
        return 0
    table = summary_table(rows)
    text = (f"# Adaptation benchmark\n\nbase `{model}`, styles `{args.styles}`, k = {args.ks}, {args.draws} "
            f"draw(s), at most {args.max_tests} scored rigs per draw, seed {args.seed}.\n\n{table}\n")
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    log(table)
    return 0
