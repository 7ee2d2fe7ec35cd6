#!/usr/bin/env bash
# Reproduce the shipped model from ../shared/data (docs/model.md): data view, synthetic unlabelled
# creatures, training (resumable), export, evaluation against the baselines, ablation, model card.
# Usage: bash scripts/ship_model.sh [DATA_ROOT]   (default ../shared/data). Steps whose output
# exists are skipped, so a killed run continues where it stopped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
DATA="${1:-../shared/data}"
VIEW=runs/views/shipped
TRAIN_CMD="python -m backend train --config configs/shipped.toml --data $VIEW --out runs/shipped --cache-dir runs/cache --unlabeled-dir runs/synth400"
TRAIN2_CMD="python -m backend train --config configs/shipped.toml --data $VIEW --out runs/shipped_parent --cache-dir runs/cache --unlabeled-dir runs/synth400 --init runs/shipped/best_generator.pt --set features.parent_candidate=true --set optim.lr_g=3e-4 --set stages.stage1_epochs=12 --set run.threads=1"
METHODS="boneheat,nearest,envelope,geodesic,heat:skip_helpers=1,heat"

[ -f $VIEW/view.json ] || python -m backend data-view "$DATA" --out $VIEW \
    --holdout-group makehuman_basemesh --holdout-group q_mech_pack
[ -f runs/synth400/manifest.jsonl ] || python -m backend synth --count 400 --seed 1 --out runs/synth400
if [ ! -f runs/shipped/summary.json ]; then
  if [ -f runs/shipped/state.pt ]; then $TRAIN_CMD --resume; else $TRAIN_CMD; fi
fi
# step 2 (model 1.4): warm start with parent candidates (the nearest bone's parent is always a candidate)
if [ ! -f runs/shipped_parent/summary.json ]; then
  if [ -f runs/shipped_parent/state.pt ]; then $TRAIN2_CMD --resume; else $TRAIN2_CMD; fi
fi
# the generator alone, then its blend with the prior: a fixed blend and a per-rig rule (the blend rises
# with the share of the surface in small separate pieces), both by the lowest L1 averaged over val and
# the out-of-style check; the model ships the rule, the fixed blend is its fallback
python -m backend export runs/shipped_parent/best_generator.pt runs/shipped_parent/generator.onnx
python -m backend blend-sweep runs/shipped_parent/generator.onnx $VIEW/val --check $VIEW/out_of_style \
    --fit-rule --out docs/blend_val.json
BLEND=$(python -c "import json; print(json.load(open('docs/blend_val.json'))['chosen'])")
python -m backend export runs/shipped_parent/best_generator.pt models/autoskin.onnx --model-version 1.4 --prior-blend "$BLEND" \
    --prior-blend-rule docs/blend_val.json
cp runs/shipped_parent/best_generator.pt models/autoskin.pth
python -m backend evaluate $VIEW/test --methods model:models/autoskin.onnx,model-all-bones:models/autoskin.onnx,$METHODS --out runs/eval_test_shipped --pictures 3
python -m backend evaluate $VIEW/out_of_style --methods model:models/autoskin.onnx,model-all-bones:models/autoskin.onnx,$METHODS --out runs/eval_oos_shipped
python -m backend ablation --data $VIEW --config configs/ablation.toml --unlabeled-dir runs/synth400 \
    --fractions 0.25,1.0 --eval val=$VIEW/val --eval test=$VIEW/test --eval out_of_style=$VIEW/out_of_style \
    --seeds 0,1,2 --out runs/ablation --table docs/ablation_grid.md
python -m backend model-card --model models/autoskin.onnx --run runs/shipped --run runs/shipped_parent --data-view $VIEW/view.json \
    --eval test=runs/eval_test_shipped --eval out_of_style=runs/eval_oos_shipped \
    --ablation docs/ablation_grid.md --ablation docs/ablation.md --notes docs/model_notes.md \
    --blend docs/blend_val.json --train-command "$TRAIN_CMD" --train-command "$TRAIN2_CMD"
