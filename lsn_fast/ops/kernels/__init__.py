"""Triton kernels: pure functions over pointers and shapes (no validation; see :mod:`lsn_fast.ops`)."""
