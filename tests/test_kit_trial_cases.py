"""
The kit's pytest plugin runs trial ``TestCase``s in pytest-twisted's
reactor: a test folder of both kinds, run by pytest out of the repo (after
a pytest-twisted test has started the reactor), gives each trial test its
trial outcome, with setUp, tearDown and every cleanup (Deferreds awaited)
in trial's order.
"""

from __future__ import annotations

from pathlib import Path

from test_examples import run

CONFTEST = 'pytest_plugins = ["turberfield_twisted.testing.pytest_plugin"]\n'

INI = "[pytest]\naddopts = --reactor=asyncio -p no:cacheprovider\n"

TESTS = '''
import pytest_twisted
from twisted.internet import defer, task
from twisted.trial.unittest import TestCase


def note(test, what):
    with open("order.txt", "a") as f:
        f.write(f"{test._testMethodName} {what}\\n")


@pytest_twisted.ensureDeferred
async def test_a_pytest_test_starts_the_reactor():
    from twisted.internet import reactor
    await task.deferLater(reactor, 0, lambda: None)


class Cases(TestCase):
    def setUp(self):
        note(self, "setUp")
        self.addCleanup(self.later, "cleanup 1")
        self.addCleanup(self.later, "cleanup 2")

    def later(self, what):
        from twisted.internet import reactor
        return task.deferLater(reactor, 0, note, self, what)

    def tearDown(self):
        note(self, "tearDown")

    async def test_passes(self):
        from twisted.internet import reactor
        await task.deferLater(reactor, 0, note, self, "test")

    def test_fails(self):
        self.assertEqual(1, 2)

    def test_skipped(self):
        note(self, "ran")

    test_skipped.skip = "not today"

    def test_todo(self):
        self.fail("known")

    test_todo.todo = "known to fail"

    def test_times_out(self):
        return defer.Deferred()

    test_times_out.timeout = 0.01
'''


def test_trial_cases_get_their_trial_outcomes_under_pytest(tmp_path: Path):
    """Pass, fail, skip, todo and timeout as trial says; fixtures and cleanups in order."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_mixed.py").write_text(TESTS)
    result = run(tmp_path, "-m", "pytest", "-v", "-rs")
    out = str(result["out"])
    assert result["code"] == 1, out  # one fails, one times out
    for outcome in ("test_a_pytest_test_starts_the_reactor PASSED", "Cases::test_passes PASSED",
                    "Cases::test_fails FAILED", "Cases::test_skipped SKIPPED",
                    "Cases::test_todo XFAIL", "Cases::test_times_out FAILED",
                    "not today", "TimeoutError", "1 skipped, 1 xfailed"):
        assert outcome in out, (outcome, out)
    order = (tmp_path / "order.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in order if line.startswith("test_passes ")] == [
        "setUp", "test", "tearDown", "cleanup 2", "cleanup 1"]
    assert not any(line.startswith("test_skipped ") for line in order)
    assert result["left"] == []
