"""Synthesis: images at a new, known JSW from layer stacks.

* :mod:`.compose` — :func:`compose` (one stack) and :func:`synthesize` (the fused bank operator);
* :mod:`.stream` — :class:`JSWStream`, sharded, resumable, per-sample-deterministic batches;
* :mod:`.export` — shard export (safetensors / WebDataset tar) and verification.
"""
