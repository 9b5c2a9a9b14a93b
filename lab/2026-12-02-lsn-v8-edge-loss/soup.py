"""Uniform weight average ("model soup") of LSN checkpoints that share an architecture.

    python lab/2026-12-02-lsn-v8-edge-loss/soup.py OUT.safetensors A.safetensors B.safetensors ...

The metadata (config, ...) is taken from the first file; every tensor is averaged in float32 and
cast back to its dtype. Used on the v8 fine-tunes of v6 (runs/lsn_v8_*/model.safetensors, the EMA
weights), then scored with ``lsn-fast eval-lsn --weights OUT --ranges wide``.
"""
import sys

from safetensors import safe_open
from safetensors.torch import load_file, save_file

out, paths = sys.argv[1], sys.argv[2:]
if len(paths) < 2:
    sys.exit("give OUT and at least two input .safetensors files")
sds = [load_file(p) for p in paths]
if any(sd.keys() != sds[0].keys() for sd in sds):
    sys.exit("the checkpoints do not hold the same tensors")
with safe_open(paths[0], "pt") as f:
    meta = f.metadata()
avg = {k: (sum(sd[k].float() for sd in sds) / len(sds)).to(sds[0][k].dtype) for k in sds[0]}
save_file(avg, out, metadata=meta)
print("wrote", out, len(avg), "tensors, mean of", len(paths))
