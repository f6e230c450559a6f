"""
The testing kit: for people who write worker apps and the code that
launches them, under trial and pytest-twisted alike.

- In memory, no process, no port: :func:`worker_harness` builds a worker's
  app as the runtime does and gives a treq-style client of it
  (``await h.client.get("/")``), the events it posts (``h.events``) and
  live config (``await h.push_config({...})``).
- Real processes: :func:`running_worker` (and :func:`running_initiator`)
  is an async context manager that starts an initiator on free loopback
  ports (:func:`free_ports`), launches a module and waits until it is
  ready; on the way out it stops everything, closes every pool and fails
  the test (:class:`ProcessesLeft`) if a process is left. The pytest
  fixtures are in :mod:`turberfield_twisted.testing.pytest_plugin` (not
  loaded unless asked for).
- On a Clock: :class:`FakeLauncher`, :class:`FakeWorker`,
  :class:`FakeProcessReactor`, :class:`FakeHealth` and
  :func:`initiator_on_clock`, to test launch, restart, backoff and stop
  logic with time moved by hand.
- Builders and checks: :func:`initiator_config`, :func:`as_config`,
  :func:`children_of`, :func:`processes`, :func:`wait_gone`, :func:`kill_left`
  (what a test left, ended by pid), :class:`Daemon` (a ``twistd proactor``
  child), :func:`serve` (on a free port unless told).

Names are imported on first use: the fault workers in this package are
worker modules, and a worker loads none of the daemon's code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from turberfield_twisted import lazy_getattr

#: Each public name and the module that holds it.
_WHERE = {
    "WorkerClient": "client",
    "DEMO": "configs",
    "as_config": "configs",
    "initiator_config": "configs",
    "sections_config": "configs",
    "Daemon": "daemon",
    "Daemons": "daemon",
    "EventLog": "events",
    "FakeHealth": "fakes",
    "FakeLauncher": "fakes",
    "FakeProcess": "fakes",
    "FakeProcessReactor": "fakes",
    "FakeWorker": "fakes",
    "InitiatorOnClock": "fakes",
    "initiator_on_clock": "fakes",
    "FakeParent": "harness",
    "WorkerHarness": "harness",
    "worker_harness": "harness",
    "NoFreeRange": "ports",
    "PortRange": "ports",
    "free_ports": "ports",
    "children_of": "procs",
    "group_members": "procs",
    "kill_left": "procs",
    "kill_now": "procs",
    "pid_alive": "procs",
    "Proc": "procs",
    "processes": "procs",
    "wait_gone": "procs",
    "ProcessesLeft": "running",
    "RunningInitiator": "running",
    "RunningWorker": "running",
    "running_initiator": "running",
    "running_worker": "running",
    "Listening": "serving",
    "serve": "serving",
}

__all__ = [
    "DEMO",
    "Daemon",
    "Daemons",
    "EventLog",
    "FakeHealth",
    "FakeLauncher",
    "FakeParent",
    "FakeProcess",
    "FakeProcessReactor",
    "FakeWorker",
    "InitiatorOnClock",
    "Listening",
    "NoFreeRange",
    "PortRange",
    "Proc",
    "ProcessesLeft",
    "RunningInitiator",
    "RunningWorker",
    "WorkerClient",
    "WorkerHarness",
    "as_config",
    "children_of",
    "free_ports",
    "group_members",
    "initiator_config",
    "initiator_on_clock",
    "kill_left",
    "kill_now",
    "pid_alive",
    "processes",
    "running_initiator",
    "running_worker",
    "sections_config",
    "serve",
    "wait_gone",
    "worker_harness",
]

if TYPE_CHECKING:
    from turberfield_twisted.testing.client import WorkerClient
    from turberfield_twisted.testing.configs import (
        DEMO,
        as_config,
        initiator_config,
        sections_config,
    )
    from turberfield_twisted.testing.daemon import Daemon, Daemons
    from turberfield_twisted.testing.events import EventLog
    from turberfield_twisted.testing.fakes import (
        FakeHealth,
        FakeLauncher,
        FakeProcess,
        FakeProcessReactor,
        FakeWorker,
        InitiatorOnClock,
        initiator_on_clock,
    )
    from turberfield_twisted.testing.harness import FakeParent, WorkerHarness, worker_harness
    from turberfield_twisted.testing.ports import NoFreeRange, PortRange, free_ports
    from turberfield_twisted.testing.procs import (
        Proc,
        children_of,
        group_members,
        kill_left,
        kill_now,
        pid_alive,
        processes,
        wait_gone,
    )
    from turberfield_twisted.testing.running import (
        ProcessesLeft,
        RunningInitiator,
        RunningWorker,
        running_initiator,
        running_worker,
    )
    from turberfield_twisted.testing.serving import Listening, serve


__getattr__ = lazy_getattr(__name__, _WHERE, globals())
