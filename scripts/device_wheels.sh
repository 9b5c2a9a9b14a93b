#!/usr/bin/env bash
# Fetch the wheels that the lent GPU machine lacks into .whl/ (gitignored), for
# benchmarks/gpu_suite.py. That machine has no network, Python 3.12, torch 2.11 (cu130) and
# Triton 3.6, and every other package gpu_suite.py imports except these two (its image's package
# list: the device tool's KINDS.md). Run here, in the repository root, before the device call:
#
#   bash scripts/device_wheels.sh          # ~7 MB: kornia 0.9.0 + kornia_rs 0.2.0, cp312 manylinux
#
# The device call then carries .whl and installs them without network or dependencies
# (benchmarks/README.md, "GPU suite", has the whole command).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl kornia==0.9.0 kornia_rs==0.2.0
ls -l .whl
