"""The Layer Separation Network.

* :mod:`.lsn` — :class:`LSN`, :func:`separate`, weights I/O;
* :mod:`.inference` — :class:`FastSeparator` (channels-last, bf16, CUDA graphs);
* :mod:`.fused` — the LSN's fused layers (Triton kernels in :mod:`lsn_fast.ops.kernels`);
* :mod:`.settings` — the training distribution shared by training and evaluation;
* :mod:`.train` — two-stage training; :mod:`.evaluate` — held-out evaluation.
"""
