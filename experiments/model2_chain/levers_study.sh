#!/bin/bash
# Run from the repository root after the ablation grid (runs/ablation12): bash experiments/model2_chain/levers_study.sh
# Separate the two levers of model 1.2 at the grid's budget: supervised-only, 100 % labels, 3 seeds,
# once without position-free inputs and once without remeshing (compare with runs/ablation12/sup_f1_s*).
set -e
for seed in 0 1 2; do
  for lever in positions:model.relative_inputs=false noremesh:data.augment_remesh=0; do
    name=${lever%%:*}; set=${lever#*:}; d=runs/levers/${name}_s$seed
    [ -f $d/summary.json ] || .venv/bin/python -m backend train --config configs/ablation.toml --data runs/views/shipped \
      --out $d --cache-dir runs/cache --set run.seed=$seed --set $set --no-progress --no-adversarial --no-consistency \
      --no-physical --unlabeled-dir runs/synth400
    [ -f $d/model.onnx ] || .venv/bin/python -m backend export $d/best_generator.pt $d/model.onnx
    for e in val test out_of_style; do
      [ -f $d/eval_$e/summary.md ] || .venv/bin/python -m backend evaluate runs/views/shipped/$e --methods model:$d/model.onnx \
        --out $d/eval_$e --poses 5 --no-progress
    done
  done
done
echo done
