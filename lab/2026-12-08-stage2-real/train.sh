#!/usr/bin/env bash
# Reproduces lsn_fast/weights/lsn_real_s2.safetensors (CPU, 2 threads, ~12 min + 1 min data):
# stage 2 from v13 on crops of 6 of the 8 dev radiographs in ../shared/real-dev (2 held out).
#   bash lab/2026-12-08-stage2-real/train.sh [DATA_OUT=/tmp/stage2_real] [RUN=/tmp/s2_real]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${1:-/tmp/stage2_real}"
RUN="${2:-/tmp/s2_real}"
python "$HERE/prepare.py" "$DATA"
mkdir -p "$DATA/train" "$DATA/heldout"
mv -f "$DATA/train.safetensors" "$DATA/train/" && mv -f "$DATA/heldout.safetensors" "$DATA/heldout/"
lsn-fast train-lsn --stage 2 --data "$DATA/train" --init "$HERE/../../lsn_fast/weights/lsn_default.safetensors" \
  --steps 1000 --crop 128 --batch 4 --lr 2e-4 --warmup 50 --recon-target input --mix-stage1 2 \
  --loss-weight anchor_bone=1.0 --threads 2 --out "$RUN" --no-progress --log-every 100
python "$HERE/evaluate.py" "$RUN/model.safetensors" "$DATA" --phantom
echo "cp $RUN/model.safetensors lsn_fast/weights/lsn_real_s2.safetensors  # to ship it"
