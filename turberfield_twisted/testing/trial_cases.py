"""
Trial test cases under pytest-twisted, in the same run as pytest's own tests.

Trial runs a ``twisted.trial.unittest.TestCase`` by spinning the reactor
itself; under pytest-twisted the reactor already runs (in its greenlet),
so pytest's own way of running one fails as soon as a pytest-twisted test
has started it ("This event loop is already running"). The kit's pytest
plugin collects each such test case itself instead: each test runs in the
running reactor (``setUp``, the test method, ``tearDown``, then the
cleanups, each of which may return a Deferred or be a coroutine), bounded
by the test's trial ``timeout``; ``skip`` and ``todo`` are honoured as
skip and expected failure.

What trial does beyond that is not done here: it checks that a test left
nothing in the reactor (``DirtyReactorAggregateError``), which under
pytest-twisted is shared by every test; and ``flushLoggedErrors`` needs
trial's log observer. A test that relies on either runs under trial.
``SynchronousTestCase``\\ s never touch the reactor: pytest runs them as it
runs any unittest case.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import TestCase

__all__ = ["TrialCase", "TrialTest", "collect_trial_cases"]


@pytest.hookimpl(tryfirst=True)
def collect_trial_cases(collector: pytest.Collector, name: str, obj: object) -> Any:
    """``pytest_pycollect_makeitem``: a trial ``TestCase`` subclass is a :class:`TrialCase`."""
    if isinstance(obj, type) and issubclass(obj, TestCase) and obj is not TestCase:
        return TrialCase.from_parent(collector, name=name)
    return None


class TrialCase(pytest.Class):
    """A trial ``TestCase`` subclass: one :class:`TrialTest` per test method."""

    def collect(self) -> list[pytest.Item]:
        if not getattr(self.obj, "__test__", True):
            return []
        names = unittest.TestLoader().getTestCaseNames(self.obj)
        return [TrialTest.from_parent(self, name=name) for name in names]


class TrialTest(pytest.Item):
    """One test method of a trial ``TestCase``, run in pytest-twisted's reactor."""

    def runtest(self) -> None:
        case = self.parent.obj(self.name)  # type: ignore[union-attr]
        skipped, why = case.getSkip()
        if skipped:
            pytest.skip(why or "skipped")
        todo = case.getTodo()
        from twisted.internet import reactor  # pytest-twisted's, installed and running

        done: Deferred[None] = Deferred()
        reactor.callLater(0, lambda: Deferred.fromCoroutine(
            _run(case, self.name, reactor)).chainDeferred(done))
        try:
            pytest_twisted.blockon(done)
        except unittest.SkipTest as exc:
            pytest.skip(str(exc))
        except Exception:
            if todo is not None:
                pytest.xfail(str(todo.reason))
            raise

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"{self.parent.name}.{self.name}"  # type: ignore[union-attr]


async def _run(case: TestCase, name: str, reactor: Any) -> None:
    """``setUp``, the test, ``tearDown`` (if setUp passed), then every cleanup, last first."""
    cleanups: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def add_cleanup(f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        cleanups.append((f, args, kwargs))

    case.addCleanup = add_cleanup  # type: ignore[method-assign]  # so that they are awaited
    errors: list[BaseException] = []
    try:
        await maybeDeferred(case.setUp)
        try:
            test = maybeDeferred(getattr(case, name))
            await test.addTimeout(case.getTimeout(), reactor)
        finally:
            await maybeDeferred(case.tearDown)
    except BaseException as exc:
        errors.append(exc)
    while cleanups:
        f, args, kwargs = cleanups.pop()
        try:
            await maybeDeferred(f, *args, **kwargs)
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
