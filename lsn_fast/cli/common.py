"""Shared pieces of the ``lsn-fast`` subcommands: the usage error (exit code 2) and argparse types."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad arguments detected after parsing (exit code 2)."""


def positive_int(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {v!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {i}")
    return i


def positive_float(v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
    if not f > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {f}")
    return f
