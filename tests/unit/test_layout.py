"""The installed import name is ``labrig`` alone; the repository's folders are not import
names (``orchestrator``, ``drivers``, ``protocols`` and ``simulators`` are taken, or
could be, by other distributions)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip install .`` would install, built from a copy of this checkout's
    sources: a checkout's own ``build/`` left by an earlier build would hide a file missing
    from the package data."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in ("labrig", *FOLDERS):
        shutil.copytree(REPO / top, src / top, symlinks=True, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (built,) = out.glob("labrig-*.whl")
    return built


@pytest.mark.timeout(300)
def test_the_wheel_installs_labrig_and_nothing_else(wheel: Path) -> None:
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"labrig"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "labrig/protocols/library/rate_test.yaml" in names
    assert "labrig/orchestrator/cli.py" in names
    # the web app's pages and chart library ship in the package: no build step for users
    assert "labrig/orchestrator/web/static/run.js" in names
    assert "labrig/orchestrator/web/static/vendor/uplot/uPlot.iife.min.js" in names
    # every file of the four folders ships (a new data file needs its package-data line)
    sources = [f"labrig/{p.relative_to(REPO).as_posix()}"
               for top in FOLDERS for p in sorted((REPO / top).rglob("*"))
               if p.is_file() and "__pycache__" not in p.parts]  # fmt: skip
    missing = [n for n in sources if n not in names and not n.endswith(".pyc")]
    assert missing == [], "add these to [tool.setuptools.package-data]:\n" + "\n".join(missing)


@pytest.mark.timeout(300)
def test_the_cli_runs_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    """``labrig library`` and ``labrig run rate_test --sim`` with labrig imported from the
    unpacked wheel, not this checkout: ``-S`` skips the editable install's path hook and
    PYTHONPATH gives the wheel first, then the environment's other packages."""
    unpacked, work = tmp_path / "unpacked", tmp_path / "work"
    zipfile.ZipFile(wheel).extractall(unpacked)
    work.mkdir()
    libs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(unpacked), *sorted(libs)])}  # fmt: skip

    def labrig(*args: str) -> subprocess.CompletedProcess[str]:
        code = (f"import sys, labrig; assert labrig.__file__.startswith({str(unpacked)!r}); "
                f"sys.argv = ['labrig', *{list(args)!r}]; "
                "from labrig.orchestrator.cli import main; main()")  # fmt: skip
        return subprocess.run([sys.executable, "-S", "-c", code], cwd=work, env=env,
                              capture_output=True, text=True, timeout=240)  # fmt: skip

    listed = labrig("library")
    assert listed.returncode == 0, listed.stderr
    assert "rate_test" in listed.stdout
    ran = labrig("run", "rate_test", "--sim", "--out", str(work / "runs"), "-q")
    assert ran.returncode == 0, ran.stderr
    (run_dir,) = (work / "runs").iterdir()
    assert (run_dir / "cycles.parquet").is_file()
    for folder in FOLDERS:  # the repository's folders are no import names there
        bare = subprocess.run([sys.executable, "-S", "-c", f"import {folder}"], cwd=work,
                              env=env, capture_output=True, text=True)  # fmt: skip
        assert bare.returncode != 0 and "ModuleNotFoundError" in bare.stderr
