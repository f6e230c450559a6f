"""
How ``make`` installs the package: an editable install that is one plain
path entry (a ``.pth`` line naming the project's root), made without
setuptools' "compat editable mode is transitional" warning, through which
twistd finds the ``proactor`` plugin and ``python -P`` finds a worker
module, as the daemon's launch check does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _install_lines() -> list[str]:
    """The Makefile's ``pip install -e`` lines."""
    return [line.strip() for line in (ROOT / "Makefile").read_text().splitlines()
            if "pip install" in line and " -e " in line]


def test_the_makefile_asks_for_no_transitional_editable_mode():
    """Each editable install in the Makefile is pip's plain -e, with no editable_mode setting."""
    lines = _install_lines()
    assert len(lines) == 2, lines
    assert not [line for line in lines if "editable_mode" in line or "config-settings" in line]


def test_an_editable_install_is_one_plain_path_entry_and_says_nothing_of_compat(tmp_path):
    """
    ``pip install -e`` of the project (as the Makefile runs it, less the
    dependencies) warns of nothing transitional and leaves one .pth line, the
    project's root, and no import hook; from elsewhere, ``python -P`` finds
    the package and the twistd plugin through it.
    """
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": str(tmp_path)}
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-e", str(ROOT)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                          check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert not re.search(r"transitional|compat", said, re.IGNORECASE), said[-3000:]
    [site] = (env_dir / "lib").glob("python3*/site-packages")
    [pth] = site.glob("__editable__*.pth")
    assert pth.read_text().split() == [str(ROOT)]
    assert not list(site.glob("__editable__*finder*"))
    probe = ("import importlib.util, os, sys\n"
             "print(importlib.util.find_spec('turberfield_twisted').origin)\n"
             "print([p for p in sys.path if os.path.isfile("
             "os.path.join(p, 'twisted', 'plugins', 'turberfield_proactor.py'))])\n")
    found = subprocess.run([str(python), "-P", "-c", probe], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=60, check=True).stdout.splitlines()
    assert found == [str(ROOT / "turberfield_twisted" / "__init__.py"), repr([str(ROOT)])]


def test_the_installed_twistd_has_the_plugin_and_workers_are_findable(tmp_path):
    """In the suite's own environment, twistd lists proactor and the launch check finds a worker."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    usage = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=60, check=True).stdout
    assert re.search(r"^\s+proactor\s", usage, re.MULTILINE), usage
    probe = ("import sys\n"
             "from turberfield_twisted.launch.local import _findable\n"
             "print(_findable('turberfield_twisted.demo.hello', sys.path))\n")
    found = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=60, check=True).stdout
    assert found == "True\n"
