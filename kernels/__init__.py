"""Triton kernels (installed as lsn_fast.kernels): pure functions over pointers and shapes."""
