"""Studies the CLI runs (``lsn-fast experiment ...``). Nothing in the library imports them.

* :mod:`.five_percent` — the paper's "5 % of the labels" experiment (``run_five_percent``);
* :mod:`.stage2_transfer` — LSN stage 2 on an unseen phantom setting vs more stage 1.
"""
