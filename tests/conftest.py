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
import treq.api

from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.ports import WINDOW_ENV, PortRange, free_ports
from turberfield_twisted.testing.procs import children_of, kill_now

pytest_plugins = ["turberfield_twisted.testing.pytest_plugin"]
#: Trial's tests (``make test`` runs them with trial): not for pytest to collect.
collect_ignore_glob = ["*_trial.py"]

# Every port a test binds comes from the kit's free_ports, in this window:
# up to the kernel's ephemeral ports (32768 on), and above the fixed ports
# older versions of this suite bind, which may run beside this one.
os.environ.setdefault(WINDOW_ENV, "27500-32767")

#: Kept for modules that still import it from here: the kit's builder.
__all__ = ["initiator_config"]


@pytest.fixture(autouse=True)
def _nothing_left() -> Any:
    """
    After each test and its fixtures, however they ended: a process of this
    one's that the test started and left alive is killed (by pid) and the
    test errors naming it, so one failure never turns into the "process
    left" failures of the tests after it.
    """
    before = set(children_of(os.getpid()))
    yield
    left = kill_now(pid for pid in children_of(os.getpid()) if pid not in before)
    if left:
        pytest.fail(f"processes left behind by this test (now killed): {sorted(left)}",
                    pytrace=False)


@pytest.fixture(autouse=True)
def _no_kept_connection() -> Any:
    """
    After each test, treq's default pool lets go of the connections it keeps
    alive. A server stopped by a test (its port no longer listening) still
    answers on a connection it had accepted; when a later test was handed
    the same port by free_ports, treq sent that test's first request down
    the old connection, to the old server: a fresh daemon's admin token
    answered 401 (seen twice in clean-clone runs, never alone).
    """
    yield
    pool = treq.api.get_global_pool()
    if pool is not None:
        pool.closeCachedConnections()  # cache emptied now; the aborts follow


@pytest.fixture
def take_ports() -> Any:
    """
    ``take_ports(size=20)``: a block of at least ``size`` free loopback
    ports (the kit's free_ports), held until the test is over.
    """
    held: list[PortRange] = []

    def take(size: int = 20) -> PortRange:
        held.append(free_ports(size))
        return held[-1]

    yield take
    for block in held:
        block.release()


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
    (a hundred child ports from free_ports, held until it stops); stopped
    after, and no process left.
    """
    running = await start_initiator(initiator_config(), reactor=reactor, ports=free_ports(100))
    return running.init


@pytest_twisted.async_yield_fixture
async def daemons(reactor: Any, tmp_path: Any) -> Any:
    """
    ``await daemons(extra="", size=20)`` starts a ``proactord -n proactor``
    on a free loopback port with ``size`` child ports from free_ports
    (``daemon.ports``, held until it stops; ``daemons(low, high, ...)``:
    a range the test holds), ``extra`` more lines for its ``[proactor]``
    section, and returns it listening. After the test, however it ended,
    every daemon and every worker it started is gone.
    """
    from turberfield_twisted.testing.daemon import Daemons
    from turberfield_twisted.testing.procs import children_of

    started = Daemons(reactor, tmp_path)
    yield started.start
    await started.stop()
    assert children_of(os.getpid()) == []
