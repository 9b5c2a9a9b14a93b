"""Synthesis: images at a new, known JSW from layer stacks.

* :mod:`.render` — :func:`~.render.render`, the one path from layers + a move to the fused op
  (``compose``, ``synthesize``, ``JSWStream`` and the five-percent experiment all end there);
* :mod:`.compose` — :func:`compose` (one stack) and :func:`synthesize` (the fused bank operator);
* :mod:`.stream` — :class:`JSWStream`, sharded, resumable, per-sample-deterministic batches;
* :mod:`.export` — shard export (safetensors / WebDataset tar) and verification.
"""
