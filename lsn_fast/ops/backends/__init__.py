"""Backends of the fused operator: ``cpu``, ``cuda``, ``triton`` (``reference`` lives in
:mod:`lsn_fast.physics.reference`). Each module exposes ``OPS = {"synthesize": fn}``; the registry
(:mod:`lsn_fast.ops.registry`) loads them on first use."""
