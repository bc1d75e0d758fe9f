"""Writing a file exactly once: durable, atomic, never overwriting.

For files that must not be clobbered (keystores, signed reports): the data goes
to a temp file in the same directory, is fsynced, then hard-linked to its name.
`link` fails if the name exists, so a concurrent or earlier writer always wins
and nothing is ever replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_new_file(path: Path, data: bytes, mode: int) -> bool:
    """Create `path` holding `data` with `mode` (whatever the umask).

    Returns False, writing nothing, if `path` already exists; raises OSError
    on I/O errors. The directory must exist.
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True


def fsync_dir(directory: Path) -> None:
    """Make a new name in `directory` survive a power cut (best effort)."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_secret(value: str | None, path: str | None) -> str | None:
    """A secret given inline (already expanded from ${ENV}) or in a file (stripped).

    Raises OSError when the file cannot be read; the caller names the setting.
    """
    if value is not None:
        return value
    if path is not None:
        return Path(path).expanduser().read_text().strip()
    return None
