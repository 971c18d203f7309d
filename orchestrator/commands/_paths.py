"""Directories given on the command line, checked before anything is written there.

``--out`` (where run directories go) must be a directory this process can create
entries in: a file, ``/dev/null``, ``/proc`` or a read-only file system is refused with
the reason and exit code 2, before any run directory exists. ``--runs`` of the commands
that only read a runs directory must at least not be a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["directory_problem", "existing_dir_callback", "writable_dir_or_exit"]


def directory_problem(path: Path, option: str) -> str | None:
    """Why ``path`` cannot take new run directories (made if missing), or None."""
    try:
        if path.exists() and not path.is_dir():
            kind = "a file" if path.is_file() else "not a directory"
            return f"{option} {path} is {kind}; give a directory"
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".labrig-probe-", dir=path)
        os.rmdir(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f"{option} {path}: cannot create a directory there ({why})"
    return None


def writable_dir_or_exit(path: Path, option: str, err: Console) -> None:
    """Exit 2 with the reason when ``path`` cannot take new run directories."""
    problem = directory_problem(path, option)
    if problem is not None:
        err.print(f"error: {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def existing_dir_callback(value: Path | None) -> Path | None:
    """A typer callback: a runs directory that exists must be a directory."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is not a directory")
    return value
