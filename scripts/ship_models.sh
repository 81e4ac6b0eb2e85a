#!/usr/bin/env bash
# Put trained runs into the package as the shipped models, then measure them:
#   bash scripts/ship_models.sh RUNS DATA
# RUNS holds lung/ and infection/ from `cxrseg train` (or joined by scripts/join_runs.py when a run was
# fine-tuned further); DATA is the COVID-QU-Ex folder (Val is used).
# Steps: copy best weights + cards -> tune stage-2 thresholds on Val, plain and with flip TTA -> export ONNX
# beside the weights -> evaluate the two-stage pipeline on Val, plain and with TTA, and write the figures into
# the cards -> training curves and grids.
set -euo pipefail
RUNS=${1:-runs}; DATA=${2:-../shared/data/COVID-QU-Ex}
W=src/cxrseg/models/weights
for s in lung infection; do
  cp "$RUNS/$s/best.safetensors" "$W/$s.safetensors"
  cp "$RUNS/$s/best.json" "$W/$s.json"
  cp "$RUNS/$s/log.json" "$W/$s.training_log.json"
done
cxrseg tune --data "$DATA" --lung-model "$W/lung.safetensors" --infection-model "$W/infection.safetensors" | tee docs/tune-val.md
cxrseg tune --tta --data "$DATA" --lung-model "$W/lung.safetensors" --infection-model "$W/infection.safetensors" | tee docs/tune-val-tta.md
cxrseg export --format onnx --out "$W" --lung-model "$W/lung.safetensors" --infection-model "$W/infection.safetensors"
python benchmarks/quality.py --data "$DATA" --split Val --out docs/eval-val --update-cards | tee docs/quality-val.md
python benchmarks/quality.py --data "$DATA" --split Val --out docs/eval-val-tta --tta --update-cards | tee docs/quality-val-tta.md
python scripts/make_figures.py --runs "$RUNS" --eval docs/eval-val --data "$DATA" --out docs
