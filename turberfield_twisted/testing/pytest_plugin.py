r"""
pytest fixtures of the testing kit, for tests run with pytest-twisted.

Not loaded unless asked for: in the ``conftest.py`` at the root of the
tests, ::

    pytest_plugins = ["turberfield_twisted.testing.pytest_plugin"]

or on the command line, ``pytest -p turberfield_twisted.testing.pytest_plugin``;
run pytest with ``--reactor=asyncio`` (as the workers run).

- ``start_worker``: ``await start_worker(module, config, **options)``
  starts a worker process as
  :func:`~turberfield_twisted.testing.running.running_worker` does and
  returns its :class:`~turberfield_twisted.testing.running.RunningWorker`.
- ``start_initiator``: ``await start_initiator(config, **options)``, an
  initiator to launch several workers with
  (:func:`~turberfield_twisted.testing.running.running_initiator`).

Whatever they started is stopped after the test, however it ended; a
process left alive then is killed and the test errors with
:class:`~turberfield_twisted.testing.running.ProcessesLeft`.

With this plugin, pytest also runs trial ``TestCase``\ s (the kit's
``running_worker`` in ``async def`` tests, say) in pytest-twisted's
reactor, so trial and pytest tests of a worker may share a folder and a
run: see :mod:`~turberfield_twisted.testing.trial_cases`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import pytest_twisted

from turberfield_twisted.testing.running import (
    RunningInitiator,
    RunningWorker,
    running_initiator,
    running_worker,
)
from turberfield_twisted.testing.trial_cases import collect_trial_cases

__all__ = ["pytest_pycollect_makeitem", "start_initiator", "start_worker"]

#: Trial test cases are collected as the kit runs them (in the running reactor).
pytest_pycollect_makeitem = collect_trial_cases


@pytest_twisted.async_yield_fixture
async def start_worker() -> AsyncIterator[Callable[..., Coroutine[Any, Any, RunningWorker]]]:
    """``await start_worker(module, config=None, **options)``: a ready worker process."""
    async with AsyncExitStack() as stack:

        async def start(module: str, config: Any = None, **options: Any) -> RunningWorker:
            return await stack.enter_async_context(running_worker(module, config, **options))

        yield start


@pytest_twisted.async_yield_fixture
async def start_initiator(
) -> AsyncIterator[Callable[..., Coroutine[Any, Any, RunningInitiator]]]:
    """``await start_initiator(config=None, **options)``: a started initiator."""
    async with AsyncExitStack() as stack:

        async def start(config: Any = None, **options: Any) -> RunningInitiator:
            return await stack.enter_async_context(running_initiator(config, **options))

        yield start
