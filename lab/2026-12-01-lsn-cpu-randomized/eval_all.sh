#!/usr/bin/env bash
# Scores two LSN weight files on the four held-out sets of `lsn-fast eval-lsn` (32 images each).
#   bash eval_all.sh V1.safetensors V2.safetensors OUTDIR
set -euo pipefail
v1=$1; v2=$2; out=$3
mkdir -p "$out"
for r in wide train shifted ra; do
  lsn-fast eval-lsn --weights "$v1" --n 32 --size 256 --seed 10000 --ranges $r --threads 1 --json "$out/eval_v1_$r.json" > "$out/eval_v1_$r.txt"
  lsn-fast eval-lsn --weights "$v2" --n 32 --size 256 --seed 10000 --ranges $r --threads 1 --json "$out/eval_v2_$r.json" > "$out/eval_v2_$r.txt"
done
