"""
The package's layout is held by import-linter (``.importlinter``), not by
docstrings: the real tree keeps every contract, and a forbidden import or a
circle added to a scratch copy of it breaks one, naming the import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run in ``where`` (which it puts first on the path)."""
    return subprocess.run([str(LINT), "--no-cache"], cwd=where, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break."""
    shutil.copytree(ROOT / "turberfield_twisted", tmp_path / "turberfield_twisted",
                    ignore=shutil.ignore_patterns("__pycache__", "*.js", "*.css", "*.html"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


def add_line(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract():
    """Every contract of .importlinter is kept by the package as it is."""
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_a_worker_importing_the_daemon_breaks_the_worker_contract(scratch):
    """The worker package may not import the daemon: the linter fails and names the import."""
    add_line(scratch / "turberfield_twisted" / "worker" / "agent.py",
             "from turberfield_twisted.daemon import store  # noqa")
    result = lint(scratch)
    assert result.returncode == 1
    assert "A worker (the worker package" in result.stdout
    assert "turberfield_twisted.worker.agent -> turberfield_twisted.daemon.store" in result.stdout


def test_an_upward_import_breaks_the_layers(scratch):
    """jobs may not import http (a layer above it)."""
    add_line(scratch / "turberfield_twisted" / "jobs" / "admission.py",
             "from turberfield_twisted.http import views  # noqa")
    result = lint(scratch)
    assert result.returncode == 1
    assert "Layers run one way" in result.stdout
    assert "turberfield_twisted.jobs.admission -> turberfield_twisted.http.views" in result.stdout


def test_a_lazy_import_that_closes_a_circle_is_refused(scratch):
    """An import inside a function still counts: a circle between two jobs modules is refused."""
    add_line(scratch / "turberfield_twisted" / "jobs" / "transitions.py",
             "def _late():\n    from turberfield_twisted.jobs import lifecycle  # noqa\n")
    result = lint(scratch)
    assert result.returncode == 1
    assert "No circle in the import graph" in result.stdout
    assert ".transitions -> .lifecycle" in result.stdout


def test_the_cli_importing_the_daemon_is_refused(scratch):
    """The CLI builds on its client and the contract only."""
    add_line(scratch / "turberfield_twisted" / "cli" / "format.py",
             "from turberfield_twisted.jobs import job  # noqa")
    result = lint(scratch)
    assert result.returncode == 1
    assert "turberfield_twisted.cli.format -> turberfield_twisted.jobs.job" in result.stdout


@pytest.mark.parametrize("line", [
    "import werkzeug.routing  # noqa",
    "def _late():\n    from klein import Klein  # noqa\n",
    "def _late():\n    import turberfield_twisted.worker.runtime  # noqa\n",
])
def test_the_daemon_importing_klein_werkzeug_or_the_worker_runtime_is_refused(scratch, line):
    """The daemon's side routes with http.router: Klein, werkzeug and Klein's runtime stay out."""
    add_line(scratch / "turberfield_twisted" / "http" / "views.py", line)
    result = lint(scratch)
    assert result.returncode == 1
    assert "The daemon's side loads neither Klein nor werkzeug" in result.stdout
    assert "turberfield_twisted.http.views -> " in result.stdout
