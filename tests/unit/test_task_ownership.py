"""Every background task in drivers/ and simulators/ has an owner.

A task starts under a TaskGroup (``tg.create_task``, ``self._group.create_task``) that
an ``async with`` (or ``__aenter__``/``open``) entered and that cancels and awaits it on
exit; simulators start theirs through the serving shell (``SimServer.start``,
``Link.start``). Bare ``asyncio.create_task``, ``asyncio.ensure_future``,
``loop.create_task`` and ``asyncio.Task(...)`` are fire-and-forget: this test finds them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("drivers", "simulators")

#: what ``.create_task`` may be called on: a TaskGroup, by name
_GROUP_NAME = re.compile(r"^_?(tg|task_group|group)$|_(tg|group)$")
_BARE = {"create_task", "ensure_future"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def bare_task_creations(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: call`` for every task started without an owner."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.ImportFrom) and node.module == "asyncio":
            for alias in node.names:
                if alias.name in _BARE or alias.name == "Task":
                    found.append(f"{filename}:{node.lineno}: from asyncio import {alias.name}")
            continue
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = _name(func.value) or ""
            unowned = (
                func.attr == "ensure_future"
                or (func.attr == "Task" and owner == "asyncio")
                or (func.attr == "create_task" and not _GROUP_NAME.search(owner))
            )
            if unowned:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(func)}(...)")
        elif isinstance(func, ast.Name) and func.id in _BARE:
            found.append(f"{filename}:{node.lineno}: {func.id}(...)")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "asyncio.create_task(run())",
        "asyncio.ensure_future(run())",
        "loop.create_task(run())",
        "self._loop.create_task(run())",
        "asyncio.get_running_loop().create_task(run())",
        "asyncio.Task(run())",
        "from asyncio import create_task",
        "create_task(run())",
        "self.tasks.create_task(run())",
    ],
)
def test_the_scanner_finds_bare_task_creation(snippet: str) -> None:
    assert bare_task_creations(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "tg.create_task(run())",
        "self._group.create_task(run())",
        "self._tg.create_task(run())",
        "task_group.create_task(run())",
        "server.start(run(), name='x')",
        "link.start(run(), name='x')",
        "await asyncio.gather(a(), b())",
    ],
)
def test_the_scanner_lets_owned_tasks_pass(snippet: str) -> None:
    assert not bare_task_creations(snippet), snippet


def test_drivers_and_simulators_start_no_task_without_an_owner() -> None:
    found = [
        hit
        for top in SCANNED
        for path in sorted((REPO / top).rglob("*.py"))
        for hit in bare_task_creations(
            path.read_text(encoding="utf-8"), str(path.relative_to(REPO))
        )
    ]
    assert not found, "tasks without an owner (start them under a TaskGroup):\n" + "\n".join(found)
