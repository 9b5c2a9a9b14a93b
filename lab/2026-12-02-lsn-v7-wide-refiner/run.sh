#!/bin/bash
# v7 candidate: v6 with its 16-channel refiner widened to 32 channels (function-preserving), then
# A) the refiner alone, B) everything, with v6's data recipe. 1 CPU thread each phase.
set -e
export OMP_NUM_THREADS=1
[ -n "$VIRTUAL_ENV" ] || . .venv/bin/activate
COMMON="--stage 1 --model small --refine-channels 32 --refine-layers 6 --crop 256 --batch 1 --pool 64 --refresh 400 \
  --ema 0.999 --bone-scale 0.5 1.5 --soft-scale 0.7 1.5 --scatter 0 0.15 --loss-weight recon_rel=1 --loss-weight lap=1 \
  --log-every 10 --ckpt-every 1000 --threads 1 --no-progress"
lsn-fast train-lsn $COMMON --init lsn_fast/weights/lsn_default.safetensors --train-only refine --steps 5000 --lr 1e-3 \
  --warmup 100 --seed 7 --max-minutes 30 --out runs/lsn_v7a
lsn-fast train-lsn $COMMON --init runs/lsn_v7a/model.safetensors --steps 4000 --lr 2e-4 --warmup 100 --seed 8 \
  --max-minutes 36 --out runs/lsn_v7
for r in wide train shifted ra; do
  lsn-fast eval-lsn --weights runs/lsn_v7/model.safetensors --ranges $r --json runs/lsn_v7/eval_$r.json > runs/lsn_v7/eval_$r.txt
done
