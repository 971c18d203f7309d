"""Errors that point at the protocol file: ``file:line: field.path: rule``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Issue", "ProtocolError"]


@dataclass(frozen=True)
class Issue:
    """One problem in a protocol, located in its source.

    ``line`` is 1-based (``None`` when it cannot be placed); ``path`` is the dotted
    field path in the protocol tree (``sequence.2.steps.0``), empty for the whole file.
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ProtocolError(ValueError):
    """A protocol that cannot be loaded. ``issues`` lists every located problem."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)
