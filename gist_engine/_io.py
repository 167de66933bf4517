"""Atomic writes: a temporary file (or folder) beside the target, renamed onto it only when the write succeeded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o644  # ordinary results: readable by all, as a plain open() under the usual umask writes them


@contextmanager
def atomic_path(path: str | Path, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; when the block ends without an exception, rename it onto `path`.

    Readers never see half a file: they find the old file or the new one (`os.replace` is atomic on POSIX and on
    Windows within one volume). On an exception the temporary file is removed and the old file is left as it was.
    The folder is created when missing.

    Args:
        path: The file to write.
        mode: Permission bits of the written file (`tempfile.mkstemp` makes it private to its owner).

    Raises:
        OSError: The folder cannot be created or written, or the rename fails (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


@contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a new temporary folder beside `path`; when the block ends without an exception, rename it to `path`.

    Readers never see a half-filled folder. On an exception the temporary folder and all it holds are removed.

    Args:
        path: The folder to create.
        replace: Remove an existing folder at `path` first (the caller decided it may go); otherwise the rename
            fails on a non-empty one.

    Raises:
        OSError: The parent cannot be written, or `path` exists (not empty) and `replace` is false.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
