#!/usr/bin/env bash
# Put trained runs into the package as the shipped models, then measure them:
#   bash scripts/ship_models.sh RUNS DATA
# RUNS holds lung/ and infection/ from `cxrseg train` (or joined by scripts/join_runs.py when a run was
# fine-tuned further), and optionally lung-wide/ (the accurate mode's second stage 1); DATA is the COVID-QU-Ex
# folder (Val is used). The whole-film classifier is copied in by hand (README, "Model card").
# Steps: copy best weights + cards -> export ONNX beside the weights -> tune stage-2 thresholds on Val on the
# default path (head alone, plain and with flip TTA; with the shipped classifier: head + classifier, plain, TTA and
# the accurate mode) -> evaluate the two-stage pipeline on Val (plain, TTA, accurate) and write the figures into
# the cards -> training curves and grids.
set -euo pipefail
RUNS=${1:-runs}; DATA=${2:-../shared/data/COVID-QU-Ex}
W=src/cxrseg/models/weights
for s in lung infection lung-wide; do
  if [ ! -d "$RUNS/$s" ]; then
    [ "$s" = lung-wide ] && continue  # optional
    echo "missing $RUNS/$s" >&2; exit 2
  fi
  cp "$RUNS/$s/best.safetensors" "$W/$s.safetensors"
  cp "$RUNS/$s/best.json" "$W/$s.json"
  cp "$RUNS/$s/log.json" "$W/$s.training_log.json"
done
python -m cxrseg.export
T=(--data "$DATA" --infection-model "$W/infection.safetensors")
cxrseg tune "${T[@]}" --quiet | tee docs/tune-val.md
cxrseg tune "${T[@]}" --tta --quiet | tee docs/tune-val-tta.md
if [ -f "$W/classifier.safetensors" ]; then
  C=(--classifier "$W/classifier.safetensors")
  cxrseg tune "${T[@]}" "${C[@]}" --quiet | tee docs/tune-val-classifier.md
  cxrseg tune "${T[@]}" "${C[@]}" --tta --quiet | tee docs/tune-val-classifier-tta.md
  if [ -f "$W/lung-wide.safetensors" ]; then
    cxrseg tune "${T[@]}" "${C[@]}" --accurate --quiet | tee docs/tune-val-classifier-accurate.md
  fi
fi
python benchmarks/quality.py --data "$DATA" --split Val --out docs/eval-val --update-cards | tee docs/quality-val.md
python benchmarks/quality.py --data "$DATA" --split Val --out docs/eval-val-tta --tta --update-cards | tee docs/quality-val-tta.md
if [ -f "$W/lung-wide.safetensors" ]; then
  python benchmarks/quality.py --data "$DATA" --split Val --out docs/eval-val-accurate --accurate --update-cards \
    | tee docs/quality-val-accurate.md
fi
python scripts/make_figures.py --runs "$RUNS" --eval docs/eval-val --data "$DATA" --out docs
