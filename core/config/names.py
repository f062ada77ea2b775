"""The one check for every name that becomes a path component (variants, run names, sweeps, cells, shipped files)."""

from __future__ import annotations

NAME_MAX_BYTES = 200
"""The longest name a folder or file of ours may have (file systems stop at 255 bytes; suffixes ride on it)."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a folder or file that stays where it is put, or None. The one check for every name
    that becomes a path component: variants, run names, sweep names, cell names, shipped names and files."""
    if not isinstance(name, str) or not name:
        return "is empty" if name == "" else f"is {type(name).__name__}, not a name"
    if name in (".", ".."):
        return f"is {name!r}"
    if any(sep in name for sep in ("/", "\\")):
        return "holds a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character (a line break, a tab, a NUL)"
    if len(name.encode()) > NAME_MAX_BYTES:
        return f"is longer than {NAME_MAX_BYTES} bytes"
    return None


def is_plain_name(name: object) -> bool:
    """A folder or file name that stays where it is put (:func:`name_problem` finds nothing)."""
    return name_problem(name) is None
