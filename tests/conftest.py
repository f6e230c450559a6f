"""
Fixtures shared by the suite. The builders live in the testing kit
(:mod:`turberfield_twisted.testing`), whose pytest fixtures
(``start_worker``, ``start_initiator``) are loaded here.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted

from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.ports import WINDOW_ENV, PortRange

pytest_plugins = ["turberfield_twisted.testing.pytest_plugin"]
#: Trial's tests (``make test`` runs them with trial): not for pytest to collect.
collect_ignore_glob = ["*_trial.py"]

# The kit's free port ranges come from this window in our runs (the examples'
# run under test_examples.py takes 27900-27999).
os.environ.setdefault(WINDOW_ENV, "27500-27899")

#: Kept for modules that still import it from here: the kit's builder.
__all__ = ["initiator_config"]


@pytest.fixture
def state(tmp_path: Any) -> Any:
    """A state dir, locked, closed after the test."""
    from turberfield_twisted.daemon.statedir import StateDir

    opened = StateDir.open(tmp_path / "state")
    opened.lock()
    yield opened
    opened.close()


@pytest.fixture
def reactor() -> Any:
    """The installed (asyncio) reactor."""
    from twisted.internet import reactor as installed

    return installed


@pytest_twisted.async_fixture
async def initiator(reactor: Any, start_initiator: Any) -> Any:
    """
    A started Initiator on the real reactor with :func:`initiator_config`
    (child ports 21200-21299); stopped after, and no process left.
    """
    running = await start_initiator(initiator_config(), reactor=reactor,
                                    ports=PortRange(21200, 21299))
    return running.init


@pytest_twisted.async_yield_fixture
async def daemons(reactor: Any, tmp_path: Any) -> Any:
    """
    ``await daemons(low, high, extra="")`` starts a ``twistd -n proactor``
    on a free loopback port with that child port range (``extra`` more
    lines for its ``[proactor]`` section) and returns it listening. After
    the test, however it ended, every daemon and every worker it started
    is gone.
    """
    from turberfield_twisted.testing.daemon import Daemons
    from turberfield_twisted.testing.procs import children_of

    started = Daemons(reactor, tmp_path)
    yield started.start
    await started.stop()
    assert children_of(os.getpid()) == []
