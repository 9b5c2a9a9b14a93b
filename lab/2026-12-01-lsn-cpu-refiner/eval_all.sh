#!/usr/bin/env bash
# Scores LSN weight files on the four held-out sets of `lsn-fast eval-lsn` (32 images each).
#   bash eval_all.sh OUTDIR NAME=WEIGHTS [NAME=WEIGHTS ...]     e.g. v2=/tmp/v2.safetensors v3=lsn_fast/weights/lsn_default.safetensors
# SIZES="256 128" also scores 128 px images (the five-percent experiment's field of view), written
# as eval128_NAME_SET.json; 256 px keeps the name eval_NAME_SET.json. Default: 256 only.
set -euo pipefail
out=$1; shift
mkdir -p "$out"
for spec in "$@"; do
  name=${spec%%=*}; w=${spec#*=}
  for size in ${SIZES:-256}; do
    pre=eval; [ "$size" = 256 ] || pre=eval$size
    for r in wide train shifted ra; do
      lsn-fast eval-lsn --weights "$w" --n 32 --size "$size" --seed 10000 --ranges $r --threads 1 \
          --json "$out/${pre}_${name}_$r.json" > "$out/${pre}_${name}_$r.txt"
    done
  done
done
