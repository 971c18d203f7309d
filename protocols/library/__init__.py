"""The protocol library: YAML protocols from the lab's published methods.

Each file's stem is its name (``rate_test``); ``load_protocol("rate_test")`` loads one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LibraryEntry", "library_names", "library_path", "list_library"]

_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class LibraryEntry:
    """One library protocol: its name (file stem), file, title (``name:``) and ``source:``."""

    name: str
    path: Path
    title: str
    source: str


def library_names() -> list[str]:
    """The names of the library protocols, sorted."""
    return sorted(p.stem for p in _DIR.glob("*.yaml"))


def library_path(name: str) -> Path:
    """The file of library protocol ``name``; ValueError listing the names if unknown."""
    path = _DIR / f"{name}.yaml"
    if name not in library_names():
        raise ValueError(
            f"no library protocol {name!r}; the library has: {', '.join(library_names())}"
        )
    return path


def list_library() -> list[LibraryEntry]:
    """Every library protocol with its title and source (read without full validation)."""
    from ..yamlsafe import YamlProblem, read_yaml

    out: list[LibraryEntry] = []
    for name in library_names():
        path = _DIR / f"{name}.yaml"
        try:
            data = read_yaml(path.read_text(encoding="utf-8")).data
        except (OSError, YamlProblem):
            data = {}
        data = data if isinstance(data, dict) else {}
        out.append(
            LibraryEntry(
                name=name,
                path=path,
                title=str(data.get("name", name)),
                source=" ".join(str(data.get("source", "")).split()),
            )
        )
    return out
