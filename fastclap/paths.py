"""Paths as a reader of the repository can reuse them (standard library only; any layer may import it).

Commands and paths that fastclap writes into result files and summaries are recorded relative to the working
directory (the repository root, where every command runs) when they lie in the checkout or a folder beside it
(``../shared/data``, ``../prepared``), so that a committed command reruns as written on another machine.
Other absolute paths (``/tmp/...``, a model under ``/models``) are kept as given.
"""
from __future__ import annotations

import os
import shlex
from typing import Optional, Sequence


def portable_path(path: Optional[str], cwd: Optional[str] = None) -> Optional[str]:
    """``path`` relative to ``cwd`` (default: the working directory) when it is absolute and lies inside the
    parent folder of ``cwd`` (the checkout and its siblings, e.g. ``/work/shared/data`` -> ``../shared/data``
    from ``/work/repo``); any other path (relative, elsewhere, None) unchanged. Never raises."""
    if not path or not os.path.isabs(path):
        return path
    cwd = os.path.abspath(cwd or os.getcwd())
    base = os.path.dirname(cwd)
    if base == os.path.dirname(base):  # the working directory sits right below the root: keep absolute paths
        return path
    target = os.path.normpath(path)
    try:
        if os.path.commonpath([target, base]) != base:
            return path
    except ValueError:  # another drive (Windows)
        return path
    return os.path.relpath(target, cwd)


def portable_command(prog: str, argv: Sequence[str], cwd: Optional[str] = None) -> str:
    """The shell command ``prog argv...`` with every absolute path argument (``/x/y`` or ``--opt=/x/y``) made
    portable by :func:`portable_path`, each argument shell-quoted."""
    out = []
    for arg in argv:
        opt, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        out.append(shlex.quote(f"{opt}{eq}{portable_path(value, cwd)}" if eq or not opt else arg))
    return " ".join([prog, *out])
