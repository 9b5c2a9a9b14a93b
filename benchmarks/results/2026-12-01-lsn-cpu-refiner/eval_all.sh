#!/usr/bin/env bash
# Scores LSN weight files on the four held-out sets of `lsn-fast eval-lsn` (32 images each).
#   bash eval_all.sh OUTDIR NAME=WEIGHTS [NAME=WEIGHTS ...]     e.g. v2=/tmp/v2.safetensors v3=lsn_fast/weights/lsn_default.safetensors
set -euo pipefail
out=$1; shift
mkdir -p "$out"
for spec in "$@"; do
  name=${spec%%=*}; w=${spec#*=}
  for r in wide train shifted ra; do
    lsn-fast eval-lsn --weights "$w" --n 32 --size 256 --seed 10000 --ranges $r --threads 1 \
        --json "$out/eval_${name}_$r.json" > "$out/eval_${name}_$r.txt"
  done
done
