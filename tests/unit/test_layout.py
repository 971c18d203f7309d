"""The installed import name is ``labrig`` alone; the repository's folders are not import
names (``orchestrator``, ``drivers``, ``protocols`` and ``simulators`` are taken, or
could be, by other distributions)."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("orchestrator", "drivers", "protocols", "simulators")
SOURCES = (*FOLDERS, "tests", "bench")


def _bare_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names
                  if n.split(".")[0] in FOLDERS]  # fmt: skip
    return found


def test_no_module_imports_a_folder_name() -> None:
    bad = [hit for top in SOURCES for p in sorted((REPO / top).rglob("*.py"))
           for hit in _bare_imports(p)]  # fmt: skip
    assert bad == [], "import these through labrig.…:\n" + "\n".join(bad)


def test_each_folder_is_reached_through_labrig() -> None:
    for name in FOLDERS:
        link = REPO / "labrig" / name
        assert link.is_dir() and link.resolve() == (REPO / name).resolve(), link


@pytest.mark.timeout(300)
def test_the_wheel_installs_labrig_and_nothing_else(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("labrig-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"labrig"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "labrig/protocols/library/rate_test.yaml" in names
    assert "labrig/orchestrator/cli.py" in names
    # the web app's pages and chart library ship in the package: no build step for users
    assert "labrig/orchestrator/web/static/run.js" in names
    assert "labrig/orchestrator/web/static/vendor/uplot/uPlot.iife.min.js" in names
