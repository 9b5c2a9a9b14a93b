"""Writing files: atomically (a temporary file beside the target, then ``os.replace``) and with
the permissions the user's umask asks for.

``tempfile.mkstemp`` creates its file with mode 0600, and so does safetensors' ``save_file``
(0.8); a file moved into place keeps that mode, so without :func:`apply_umask` every PNG and
safetensors file the package writes would be unreadable to the user's group and others even
with ``umask 0022`` (where ``open(path, "w")`` gives 0644).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

__all__ = ["umask_mode", "apply_umask", "atomic_write", "atomic_write_text"]


def umask_mode() -> int:
    """The mode a new regular file gets from ``open(path, "w")``: ``0o666 & ~umask``."""
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode of a file created with the user's umask (see :func:`umask_mode`)."""
    os.chmod(path, umask_mode())


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, suffix: str | None = None) -> str:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file in the same folder, then
    move it into place (``os.replace``): readers never see a partial file, and an interrupted
    write leaves the old file as it was. The file gets the user's umask mode.

    Args:
        path: the destination; its folder must exist.
        write: called with the temporary path; writes the whole file there.
        suffix: the temporary file's ending (default: ``path``'s extension, so writers that
            choose the format by extension, e.g. ``LayerStack.save``, pick the right one).
    Returns:
        ``path`` as a str.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """:func:`atomic_write` of a text file (UTF-8), flushed to disk before the move."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)
