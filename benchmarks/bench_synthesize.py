"""Fused synthesis vs eager PyTorch, kornia and torch.compile: the same program as ``lsn-fast bench``.

The benchmark itself lives in :mod:`lsn_fast.bench` (installed with the package, so ``lsn-fast bench``
works outside a checkout); see its docstring and benchmarks/README.md for the options.

    python benchmarks/bench_synthesize.py --device cpu --sizes 256 --batches 64 --bank 64 --dtypes fp32,bf16
"""

import sys

from lsn_fast.bench import main

if __name__ == "__main__":
    sys.exit(main())
