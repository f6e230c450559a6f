"""
examples/ copied out of the repo and run as a user would, against the
installed package: its tests pass under pytest and under trial, and leave
no process behind. Each runner runs under a small "subreaper" parent, to
which any process it left would be handed when it exits; that parent
reports (and kills) them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from turberfield_twisted.testing.ports import WINDOW_ENV

EXAMPLES = Path(__file__).parent.parent / "examples"

#: Runs argv; then lists (and kills) what is left of what it started.
SUBREAPER = """
import ctypes, json, os, signal, subprocess, sys
from turberfield_twisted.testing.procs import children_of
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
left = children_of(os.getpid())
for pid in left:
    os.kill(pid, signal.SIGKILL)
print(json.dumps({"code": done.returncode, "out": done.stdout + done.stderr, "left": left}))
"""


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/ in a directory of its own, away from the repo."""
    where = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, where, ignore=shutil.ignore_patterns("__pycache__", "_trial_temp"))
    return where


def run(where: Path, *argv: str) -> dict[str, object]:
    """
    Run ``python argv`` in ``where`` under the subreaper, with no trace of the repo; its
    tests take their ports from free_ports in this run's window, as every test here does.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": str(where), WINDOW_ENV: os.environ.get(WINDOW_ENV, "")}
    done = subprocess.run([sys.executable, "-c", SUBREAPER, sys.executable, *argv], cwd=where,
                          env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(("argv", "passed"), [
    (("-m", "pytest", "-v"), "4 passed"),
    (("-m", "twisted.trial", "--reactor=asyncio", "test_kvstore_trial"), "PASSED (successes=4)"),
    (("-m", "pytest", "test_kvstore_pytest.py", "test_kvstore_trial.py"), "8 passed"),
], ids=["pytest", "trial", "pytest-runs-both"])
def test_the_examples_pass_out_of_the_repo_and_leave_nothing(copied: Path, argv: tuple[str],
                                                             passed: str):
    """Each runner passes its example tests (pytest given both files, all eight); none left."""
    result = run(copied, *argv)
    out = str(result["out"])
    assert result["code"] == 0, out
    assert passed in out, out
    assert result["left"] == []
    assert "kvstore.py" in os.listdir(copied) and not (copied / "turberfield_twisted").exists()
