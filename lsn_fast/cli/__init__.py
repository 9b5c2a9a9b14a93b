"""The ``lsn-fast`` command line: :func:`main` (entry point), one module per larger subcommand."""

from lsn_fast.cli.main import main

__all__ = ["main"]
