"""
README.rst's code, run as written: every block introduced by a file name
(a paragraph ending in ````NAME.py``:`` or ````NAME.ini``::``) is written
to that file in a directory of its own, away from the repo, and run as the
README says: ``pytest`` there, trial on the trial file, and both files in
one pytest run. Every other Python block at least compiles (a fragment
may ``await`` at its top level). So the README can't drift from the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import attrs
import pytest
from test_examples import run

README = Path(__file__).resolve().parent.parent / "README.rst"

#: The end of a paragraph that names the file its block is.
_NAMED = re.compile(r"``([\w.-]+\.(?:py|ini))``\s*::?\s*$")

#: The commands the README gives for each runner.
PYTEST = ("-m", "pytest")
TRIAL = ("-m", "twisted.trial", "--reactor=asyncio", "test_hello_trial")
BOTH = ("-m", "pytest", "test_hello_pytest.py", "test_hello_trial.py")


@attrs.frozen
class Block:
    """A literal block of the README: the file it names (if any), its language, its text."""

    name: str | None
    language: str | None
    code: str
    line: int


def blocks(text: str) -> list[Block]:
    """The literal blocks of reST ``text``: ``.. code-block:: LANG`` ones and ``::`` ones."""
    lines = text.splitlines()
    found = []
    for n, line in enumerate(lines):
        directive = re.match(r"^\.\. code-block::\s*(\S*)\s*$", line)
        if directive:
            intro, language = _paragraph_before(lines, n), directive.group(1) or None
        elif line.rstrip().endswith("::") and not line.startswith(".."):
            intro, language = _paragraph_before(lines, n + 1), None
        else:
            continue
        start = n + 1
        while start < len(lines) and (not lines[start].strip()
                                      or lines[start].lstrip().startswith(":")):
            start += 1
        end = start
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" ")):
            end += 1
        body = [row[4:] if row.startswith("    ") else row.strip() for row in lines[start:end]]
        named = _NAMED.search(intro)
        found.append(Block(named.group(1) if named else None, language,
                           "\n".join(body).strip("\n") + "\n", start + 1))
    return found


def _paragraph_before(lines: list[str], n: int) -> str:
    """The paragraph that ends just before line ``n`` (blank lines between skipped)."""
    end = n
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and lines[start - 1].strip():
        start -= 1
    return " ".join(row.strip() for row in lines[start:end])


def test_every_python_block_is_named_and_run_or_at_least_compiles():
    """The README's files are all there; each Python block, run or not, is valid Python."""
    found = blocks(README.read_text("utf-8"))
    names = [block.name for block in found if block.name]
    assert sorted(names) == sorted(set(names)), names  # one block a file
    assert {"hello.py", "conftest.py", "pytest.ini", "test_hello_pytest.py",
            "test_hello_trial.py"} <= set(names)
    python = [block for block in found
              if block.language == "python" or (block.name or "").endswith(".py")]
    assert len(python) >= 5
    for block in python:  # a fragment (the library's) may await at its top level
        compile(block.code, f"README.rst, line {block.line}", "exec",
                flags=0 if block.name else ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    text = README.read_text("utf-8")
    for command in (" ".join(TRIAL[1:]), " ".join(BOTH[2:])):
        assert command in " ".join(text.split()), command  # as the README gives it


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each named block of the README, as its file, in a directory of its own."""
    where = tmp_path_factory.mktemp("readme") / "mine"
    where.mkdir()
    for block in blocks(README.read_text("utf-8")):
        if block.name:
            (where / block.name).write_text(block.code)
    return where


@pytest.mark.parametrize(("argv", "passed"), [
    (PYTEST, "2 passed"),
    (TRIAL, "PASSED (successes=2)"),
    (BOTH, "4 passed"),
], ids=["pytest", "trial", "pytest-runs-both"])
def test_the_readmes_tests_pass_as_written_and_leave_nothing(written, argv, passed):
    """
    pytest in the folder runs the pytest file; trial the trial file; pytest given both
    runs all four (a trial TestCase in pytest-twisted's reactor, after pytest's own
    tests have started it). No process is left.
    """
    result = run(written, *argv)
    out = str(result["out"])
    assert result["code"] == 0, out
    assert passed in out, out
    assert result["left"] == []
