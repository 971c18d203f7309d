"""The scheduler and the daemon keep to the size rules (modules under 600 lines,
functions under 80): one responsibility per module."""

from __future__ import annotations

import ast
from pathlib import Path

import labrig.orchestrator.daemon as daemon
import labrig.orchestrator.scheduler as scheduler

MAX_MODULE = 600
MAX_FUNCTION = 80


def _files() -> list[Path]:
    return [
        p
        for pkg in (scheduler, daemon)
        for p in sorted(Path(pkg.__file__ or "").resolve().parent.glob("*.py"))
    ]


def test_modules_and_functions_are_within_the_size_rules() -> None:
    too_long = []
    for path in _files():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") >= MAX_MODULE:
            too_long.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length >= MAX_FUNCTION:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert _files() and not too_long, too_long
