"""Ids and names from outside: the formats of run, group and study ids, text names, and file operations kept inside
the data directory.

Every id that reaches a path (a bundle's manifest, a URL query, the CLI, the API) is checked with `check_id` before
the path is built; `RunManager.run_dir` refuses anything else. Removals and copies under the data directory go
through `remove_tree` and `copy_tree`, which compare resolved paths and never follow a link.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import unicodedata
from pathlib import Path

from .store import RunNotFound

# Kind -> the exact format of its ids, as the store generates them (`new_id`): 10 lowercase hex digits, after a
# one-letter prefix for groups and studies.
ID_FORMATS: dict[str, str] = {"run": r"[0-9a-f]{10}", "group": r"g[0-9a-f]{10}", "study": r"s[0-9a-f]{10}"}
ID_PREFIXES: dict[str, str] = {"run": "", "group": "g", "study": "s"}
ID_EXAMPLES: dict[str, str] = {"run": "1358c12e35", "group": "g4b1c9d2e07", "study": "s9f3a0b6c21"}


class InvalidId(RunNotFound):
    """A text that is not an id of the kind asked for (so no run, group or study has it); the message shows the
    format."""


def new_id(kind: str) -> str:
    """A fresh random id of `kind` ("run", "group" or "study"), in the format `ID_FORMATS` checks."""
    return ID_PREFIXES[kind] + secrets.token_hex(5)


def is_id(value: object, kind: str = "run") -> bool:
    """Whether `value` is a text in the id format of `kind` (no path separators, dots or other characters)."""
    return isinstance(value, str) and re.fullmatch(ID_FORMATS[kind], value) is not None


def check_id(value: object, kind: str = "run") -> str:
    """`value` itself when it is an id of `kind` ("run", "group" or "study").

    Raises:
        InvalidId: (a RunNotFound) naming the value (escaped) and the format, e.g. for `../x`, `/etc`, `..\\x`.
    """
    if not is_id(value, kind):
        prefix = f"the letter {ID_PREFIXES[kind]} and " if ID_PREFIXES[kind] else ""
        shown = f"'{printable(value)}'" if isinstance(value, str) else repr(value)
        raise InvalidId(f"{shown} is not a {kind} id (e.g. {ID_EXAMPLES[kind]}: {prefix}10 lowercase hex digits)")
    return value


# ------------------------------------------------------------------------------------------------ names
def control_characters(text: str) -> list[str]:
    """The control characters in `text` (Unicode category Cc: C0, DEL, C1; plus the line and paragraph
    separators), each as a `\\x..`/`\\u....` escape, in order of appearance."""
    return [_escape(c) for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")]


def check_name(name: object, what: str) -> str:
    """A run's, group's or study's new name: text without control characters (a newline or an ANSI escape would
    rewrite the terminal that prints it).

    Raises:
        ValueError: naming `what` and the first control character.
    """
    if not isinstance(name, str):
        raise ValueError(f"{what}: expected a text, got {type(name).__name__}")
    bad = control_characters(name)
    if bad:
        raise ValueError(f"{what} {printable(name)!r} holds the control character {bad[0]}; give a name of "
                         "printable text")
    return name


def printable(text: str) -> str:
    """`text` with every control character written as its escape (`\\n`, `\\x1b`): safe to print on a terminal."""
    return "".join(_escape(c) if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in str(text))


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


# ------------------------------------------------------------------------------------------------ files
def inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path` lies strictly inside the folder `root`, both resolved (a link in `path`'s parents is followed
    to where it leads, the last component is not)."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        return False
    parent, real_root = path.parent.resolve(), Path(root).resolve()
    return parent == real_root or real_root in parent.parents


def remove_tree(path: str | Path, root: str | Path) -> bool:
    """Remove the file, link or folder `path`, which must lie inside `root`; a link is removed itself (its target is
    never touched) and a folder's links likewise (`shutil.rmtree` does not follow them). Returns whether something
    was removed.

    Raises:
        ValueError: `path` is not inside `root` (nothing is removed).
    """
    path = Path(path)
    if not inside(path, root):
        raise ValueError(f"refused to remove {path}: it is not inside {root}")
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def copy_tree(src: str | Path, dst: str | Path, root: str | Path) -> None:
    """Copy the folder `src` to `dst` (which must lie inside `root` and not exist) without following links: a
    link anywhere in `src` is refused before anything is copied.

    Raises:
        ValueError: `dst` outside `root`, or a link (or special file) in `src`.
    """
    src, dst = Path(src), Path(dst)
    if not inside(dst, root):
        raise ValueError(f"refused to copy into {dst}: it is not inside {root}")
    if src.is_symlink() or not src.is_dir():
        raise ValueError(f"refused to copy {src}: not a folder (a link is never followed)")
    for folder, dirs, files in os.walk(src, followlinks=False):
        for name in (*dirs, *files):
            entry = Path(folder) / name
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                raise ValueError(f"refused to copy {src}: {entry.relative_to(src)} is a link or a special file")
    shutil.copytree(src, dst, symlinks=True)


__all__ = ["ID_EXAMPLES", "ID_FORMATS", "InvalidId", "check_id", "check_name",
           "control_characters", "copy_tree", "inside", "is_id", "new_id", "printable", "remove_tree"]
