"""A fresh lab database per test session on the PostgreSQL at 127.0.0.1:5432 (or
``$LABRIG_TEST_PG``), dropped with its roles at the end; every lab test is skipped, with
the reason, when no server answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labrig.orchestrator.lab.testing import TempLab, server_reachable


@pytest.fixture(scope="session")
def lab() -> Iterator[TempLab]:
    why = server_reachable()
    if why is not None:
        pytest.skip(f"no PostgreSQL for lab tests: {why}")
    with TempLab() as t:
        yield t
