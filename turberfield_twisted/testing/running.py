"""
Real worker processes for a test, started and ended whole.

::

    async with running_worker("kvstore", {"path": "/tmp/kv"}) as worker:
        response = await worker.client.get("/")
        assert await worker.events.next() == ("started", None)

:func:`running_initiator` starts an
:class:`~turberfield_twisted.daemon.initiator.Initiator` on a free loopback port
range (:func:`~turberfield_twisted.testing.ports.free_ports`) with its
control API listening on 127.0.0.1, so workers can post events and fetch
their config; :func:`running_worker` launches one module through it and
waits until it is ready. On the way out, however the test ended, every
job is stopped, every connection pool closed, every connection and
listening port gone from the reactor (trial fails a test that leaves one),
and if any process the test started is still alive it is killed and
:class:`ProcessesLeft` fails the test.

Both are async context managers, for an ``async def`` test of trial's
``TestCase`` or of pytest-twisted (whose fixture is in
:mod:`turberfield_twisted.testing.pytest_plugin`).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sysconfig
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout

from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.jobs.job import EventKind, JobEvent
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.testing.client import WorkerClient, real_client
from turberfield_twisted.testing.configs import ConfigLike, as_config, sections_config
from turberfield_twisted.testing.events import EventLog
from turberfield_twisted.testing.ports import PortRange, free_ports
from turberfield_twisted.testing.procs import children_of, group_members, kill_left, wait_gone
from turberfield_twisted.testing.serving import Listening, serve

__all__ = ["ProcessesLeft", "RunningInitiator", "RunningWorker", "running_initiator",
           "running_worker"]


class ProcessesLeft(AssertionError):
    """Processes the test started were alive after it (they have been killed)."""


@attrs.define(eq=False)
class RunningWorker:
    """
    A ready job: ``guid``, ``port``, ``url``; ``client`` reaches its
    routes; ``initiator`` is a client of the control API (admin token);
    ``events`` what the worker posted to its initiator.
    """

    guid: str
    port: int
    url: str
    client: WorkerClient
    initiator: ControlClient
    events: EventLog
    owner: RunningInitiator = attrs.field(repr=False)

    @property
    def pid(self) -> int | None:
        """The worker's pid while it runs."""
        return self.owner.init.job(self.guid).pid

    async def push_config(self, changes: Mapping[str, Any], timeout: float = 10.0) -> None:
        """Change its overridable keys live (``Initiator.update_config``): its on_config runs."""
        await self.owner.init.update_config(self.guid, dict(changes), timeout)

    def stop(self, timeout: float | None = None) -> Deferred[ExitStatus | None]:
        """Stop it (TERM, then KILL); fire with its exit status."""
        return self.owner.init.stop(self.guid, timeout)


def _import_roots(modules: list[str]) -> list[str]:
    """Where this process finds ``modules``, less what every interpreter has anyway."""
    installed = {str(Path(sysconfig.get_path(name)).resolve())
                 for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots: list[str] = []
    for module in modules:
        try:
            spec = importlib.util.find_spec(module.split(".")[0])
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        places = list(spec.submodule_search_locations or [])
        if not places and spec.origin and os.path.isabs(spec.origin):
            places = [spec.origin]
        for place in places:
            root = str(Path(place).resolve().parent)
            if root not in installed and root not in roots:
                roots.append(root)
    return roots


class RunningInitiator:
    """
    An Initiator (``init``) whose control API listens at ``url``
    (``client``: a :class:`~turberfield_twisted.cli.client.ControlClient` with
    the admin token), launching workers on ``ports``. Use it through
    :func:`running_initiator`.
    """

    def __init__(self, reactor: Any, cfg: Any, guid: str, ports: PortRange):
        from turberfield_twisted.daemon.initiator import Initiator
        from turberfield_twisted.http.api import ControlAPI

        self.reactor = reactor
        self.ports = ports
        self.init = Initiator(None, guid=guid, cfg=cfg, reactor=reactor)
        self._token = secrets.token_urlsafe(32)
        self.api = ControlAPI(self.init, self._token, reactor)
        self.pids: set[int] = set()
        self.init.subscribe(self._seen)
        self._before = set(children_of(os.getpid()))
        self._listening: Listening | None = None
        self._clients: list[WorkerClient] = []
        self.url = ""
        self.client: ControlClient | None = None

    def _seen(self, event: JobEvent) -> None:
        if event.pid:
            self.pids.add(event.pid)

    async def start(self) -> None:
        """Listen, then start the service (it checks the config)."""
        self._listening = await serve(self.reactor, self.api.site())
        host, port = self._listening.address
        self.url = f"http://{host}:{port}"
        self.init.listening(host, port)
        self.client = ControlClient(None, self.url, self._token, self.reactor)
        self.init.startService()

    async def launch(self, module: str, session: str | None = None,
                     config: Mapping[str, Any] | None = None, guid: str | None = None,
                     timeout: float | None = None) -> RunningWorker:
        """
        Launch ``module`` (``config``: the launch's overrides) and wait
        until it is ready (``timeout``: default ``ready_timeout``); raise
        as ``Initiator.launch`` and ``Initiator.ready`` do.
        """
        if self.client is None:
            raise RuntimeError("start() it first")
        events = EventLog(self.reactor)
        guid = await self.init.launch(module, guid, session, dict(config) if config else None)

        def posted(event: JobEvent) -> None:
            if event.guid == guid and event.kind is EventKind.WORKER:
                events.add(event.name, event.data)

        self.init.subscribe(posted)
        job = await self.init.ready(guid, timeout)
        client = real_client(self.reactor, job.url())
        self._clients.append(client)
        return RunningWorker(guid, job.port, job.url(), client, self.client, events, self)

    async def stop(self) -> None:
        """
        Stop every job and close everything; raise :class:`ProcessesLeft`
        (having killed them) if a process the test started is alive. Each
        step is taken even if one before it failed: whatever went wrong,
        no process, port or connection of this initiator is left.
        """
        try:
            try:
                await self.init.stopService()
                try:
                    await wait_gone(self.reactor, self.pids, timeout=30)
                except DeferredTimeout:
                    pass  # reported below
            finally:
                await self._close()
        finally:
            await self._check_gone()

    async def _close(self) -> None:
        """Close the clients and the API, stop listening, let the ports go: every one."""
        async with AsyncExitStack() as closing:  # run last to first, each whatever the others do
            closing.callback(self.ports.release)
            if self._listening is not None:
                closing.push_async_callback(self._listening.down)
            closing.push_async_callback(self.api.close)
            if self.client is not None:
                closing.push_async_callback(self.client.close)
            for client in self._clients:
                closing.push_async_callback(client.close)

    async def _check_gone(self) -> None:
        left = {pid for pid in children_of(os.getpid()) if pid not in self._before}
        for pid in self.pids:
            left.update(group_members(pid))
        if not left:
            return
        await kill_left(self.reactor, left)
        raise ProcessesLeft(f"processes left behind (now killed): {sorted(left)}")


@asynccontextmanager
async def running_initiator(
    config: ConfigLike = None,
    *,
    reactor: Any = None,
    ports: PortRange | None = None,
    guid: str = "init",
    pythonpath: str | None = None,
    **own: Any,
) -> AsyncIterator[RunningInitiator]:
    """
    A started :class:`RunningInitiator` on ``config`` (text, a
    ConfigParser, or a dict of sections, each a dict of keys: one section
    per module that may be launched). Its section ``guid`` gets the keys
    in ``own`` (default ``ready_timeout = 30``, ``stop_timeout = 5``), the
    child ports ``ports`` (default: :func:`free_ports`' 20, held until the
    end) and ``pythonpath`` (default: where this process finds the
    modules of the config, so that a worker imports what the test does).
    ``reactor`` defaults to the installed one.
    """
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    cfg = sections_config(config)
    if not cfg.has_section(guid):
        cfg.add_section(guid)
    modules = [name for name in cfg.sections() if name != guid and ":" not in name]
    keys = {key: str(value) for key, value in own.items()}
    for key, value in (("ready_timeout", "30"), ("stop_timeout", "5")):
        if key not in keys and not cfg.has_option(guid, key):
            keys[key] = value
    paths = [pythonpath] if pythonpath is not None else _import_roots(modules)
    paths.append(keys.get("pythonpath") or cfg.get(guid, "pythonpath", fallback="") or "")
    held = ports if ports is not None else free_ports()
    keys.update(listen_addr="127.0.0.1", listen_port="0", child_port_min=str(held.low),
                child_port_max=str(held.high), pythonpath=os.pathsep.join(p for p in paths if p))
    for key, value in keys.items():
        cfg.set(guid, key, value.replace("$", "$$"))
    try:
        running = RunningInitiator(reactor, cfg, guid, held)
    except BaseException:
        held.release()
        raise
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def running_worker(
    module: str,
    config: ConfigLike = None,
    *,
    session: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AsyncIterator[RunningWorker]:
    """
    A ready worker of ``module`` in a process of its own: ``config`` is
    its module's section (a dict) or a whole config (see
    :func:`~turberfield_twisted.testing.configs.as_config`); ``session``
    and ``overrides`` are the launch's; ``timeout`` bounds the wait for
    it to be ready. ``options`` go to :func:`running_initiator`.
    """
    async with running_initiator(as_config(config, module), **options) as running:
        yield await running.launch(module, session, overrides, timeout=timeout)
