"""
Proactor and Initiator: the job table, launch, readiness, stop and restart.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import signal
import uuid
from collections.abc import Callable, Iterable
from typing import IO, Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.logger import Logger

from .client import make_http, push_config
from .config import (
    ConfigError,
    check_overrides,
    job_config_text,
    make_config,
    read_stream,
    redact,
    section_items,
)
from .launcher import ILauncher, LocalLauncher, SpawnFailed, UnknownModule
from .ports import NoFreePort, next_port, port_in_use
from .process import ExitStatus, OutputTail, WorkerProtocol
from .supervision import RestartPolicy, RestartTracker

__all__ = [
    "BadGuid",
    "Initiator",
    "JobExited",
    "NotReady",
    "Proactor",
    "UnknownJob",
    "Worker",
]

#: The worker exit code for "could not bind my port" (EX_TEMPFAIL).
EXIT_PORT_IN_USE = 75
#: Job states, in the order a job passes through them.
STATES = ("starting", "ready", "stopping", "exited", "backoff", "failed")

#: States in which a job stays until it is asked to start again.
ENDED = ("exited", "failed")
#: States from which a job does not become ready unless it is started again.
_ENDING = ("stopping", *ENDED)
_GUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UnknownJob(KeyError):
    """No job has that guid."""

    def __init__(self, guid: str):
        self.guid = guid
        super().__init__(guid)

    def __str__(self) -> str:
        return f"no job {self.guid[:80]!r}"


class BadGuid(ValueError):
    """A guid given for a new job is malformed or already taken."""


class NotReady(RuntimeError):
    """A job did not answer its health check in time."""


class JobExited(RuntimeError):
    """A job ended while something waited for it to become ready."""

    def __init__(self, guid: str, status: ExitStatus | None, last_error: str | None):
        self.guid = guid
        self.status = status
        super().__init__(f"job {guid} ended ({last_error or 'no reason given'})")


class Proactor:
    """
    The basic behaviour of a module that does a job of work: options, a
    config, and the event loop (the asyncio loop under the reactor).

    ``options`` gives dotted access to command line options;
    ``loop`` is an asyncio event loop (default: the reactor's);
    ``reactor`` is the Twisted reactor (default: the installed one, which
    must be the asyncio reactor if ``loop`` is not given).
    """

    def __init__(self, options: Any, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        self.options = options
        reactor = kwargs.pop("reactor", None)
        if reactor is None:
            from twisted.internet import reactor as _global_reactor

            reactor = _global_reactor
        self.reactor: Any = reactor
        if loop is None:
            loop = getattr(reactor, "_asyncioEventloop", None)
        self.loop = loop
        self.cfg = kwargs.pop("cfg", None) or make_config()
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")

    async def read_config(self, fObj: IO[Any], timeout: float = 3) -> Any:
        """
        Read this object's config from ``fObj`` (e.g. stdin) up to EOF on the
        event loop, store it as ``cfg`` and return it.

        Raise :class:`asyncio.TimeoutError` if no complete config is seen
        within ``timeout`` seconds, :class:`ConfigError` if it is malformed.
        """
        if self.loop is None:
            raise RuntimeError("read_config needs an asyncio loop (use the asyncio reactor)")
        self.cfg = await read_stream(fObj, timeout, self.loop)
        return self.cfg


@attrs.define(eq=False)
class Worker:
    """
    One job: ``guid``, ``port``, ``session``, ``module`` and ``process``
    (the process transport) as in the seed API, plus its supervision state.
    """

    guid: str
    port: int
    session: str | None
    module: str
    process: IProcessTransport | None
    token: str = attrs.field(default="", repr=False)
    state: str = "starting"
    started: float | None = None
    status: ExitStatus | None = None
    restarts: int = 0
    last_error: str | None = None
    overrides: dict[str, str] = attrs.field(factory=dict)
    tail: OutputTail = attrs.field(factory=OutputTail, repr=False)
    tracker: RestartTracker | None = attrs.field(default=None, repr=False)
    protocol: WorkerProtocol | None = attrs.field(default=None, repr=False)
    busy_ports: set[int] = attrs.field(factory=set, repr=False)
    asked_to_stop: bool = False
    timed_out: bool = False
    pid: int | None = None
    _calls: dict[str, IDelayedCall] = attrs.field(factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The public view of this job: no token, no process object."""
        return {
            "guid": self.guid,
            "module": self.module,
            "port": self.port,
            "session": self.session,
            "state": self.state,
            "pid": self.pid,
            "started": self.started,
            "exit_code": self.status.code if self.status else None,
            "exit_signal": self.status.signal if self.status else None,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "config": redact(self.overrides),
        }


class Initiator(Proactor, MultiService):
    """
    Launch modules as worker processes and look after them.

    The initiator's own section (named by ``guid``) holds ``listen_addr``,
    ``listen_port``, ``child_port_min`` and ``child_port_max`` and the
    policy keys (``ready_timeout``, ``stop_timeout``, ``pythonpath``).
    Each module that may be launched has a section of its own; its keys
    are the defaults of its jobs, and may hold restart policy keys.

    Keyword arguments: ``reactor``, ``cfg``, ``guid`` (default
    ``options.guid``), ``launcher`` (an :class:`ILauncher`), ``http`` (a
    treq-like client used for health checks).
    """

    log = Logger()

    def __init__(self, options: Any, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        guid = kwargs.pop("guid", None) or getattr(options, "guid", None)
        launcher = kwargs.pop("launcher", None)
        http = kwargs.pop("http", None)
        self._random: Callable[[], float] | None = kwargs.pop("random", None)
        Proactor.__init__(self, options, loop, **kwargs)
        MultiService.__init__(self)
        if not guid or not self.cfg.has_section(guid):
            raise ConfigError(f"no section for the initiator {guid!r}")
        self.guid: str = guid
        own = self.cfg[guid]
        self.listen_addr = own.get("listen_addr", "127.0.0.1")
        self.listen_port = own.getint("listen_port", 0)
        self.ready_timeout = own.getfloat("ready_timeout", 10.0)
        self.stop_timeout = own.getfloat("stop_timeout", 5.0)
        self.max_exited = own.getint("max_exited", 1000)
        self.launcher: ILauncher = launcher or LocalLauncher(
            self.reactor, pythonpath=own.get("pythonpath", "")
        )
        self._pool: Any = None
        if http is None:
            http, self._pool = make_http(self.reactor)
        self.http = http
        self.workers: dict[str, Worker] = {}
        self._observers: list[Callable[[dict[str, Any]], None]] = []

    # -- the seed API ------------------------------------------------------

    @staticmethod
    def next_port(cfg: Any, guid: str, busy: Iterable[int] = frozenset()) -> int:
        """
        The lowest port in the child range of section ``guid`` that is no
        section's ``listen_port`` and not in ``busy``; raise
        :class:`NoFreePort` when none is left.
        """
        return next_port(cfg, guid, busy)

    async def launch(
        self,
        module: str,
        guid: str | None = None,
        session: str | None = None,
        config: dict[str, str] | None = None,
    ) -> str:
        """
        Start ``module`` as a job and return its guid.

        ``config`` holds per-job overrides of the module section's keys;
        only keys listed in its ``overridable`` key may be set.

        Raise :class:`UnknownModule` (bad name, no config section, not
        found), :class:`OverrideNotAllowed` or :class:`TypeError` (bad
        overrides), :class:`BadGuid`, :class:`NoFreePort` or
        :class:`SpawnFailed`; in every case nothing is left behind.
        """
        if not self.cfg.has_section(module) or module == self.guid:
            raise UnknownModule(module, "no config section allows it")
        overrides = check_overrides(self.cfg, module, config)
        self.launcher.check(module)
        if guid is None:
            guid = uuid.uuid4().hex
        elif not _GUID.match(guid) or guid in self.workers or self.cfg.has_section(guid):
            raise BadGuid(f"guid {guid[:80]!r} is malformed or taken")
        policy = RestartPolicy.from_section(self.cfg[module])
        job = Worker(
            guid=guid,
            port=0,
            session=session,
            module=module,
            process=None,
            token=secrets.token_urlsafe(32),
            overrides=overrides,
            tracker=RestartTracker(policy, self._random or random.random),
        )
        self._spawn(job)
        self.workers[guid] = job
        self._forget_old()
        return guid

    # -- queries -----------------------------------------------------------

    def job(self, guid: str) -> Worker:
        """The job with ``guid``; raise :class:`UnknownJob`."""
        try:
            return self.workers[guid]
        except KeyError:
            raise UnknownJob(guid) from None

    def worker_url(self, job: Worker, path: str = "") -> str:
        """
        ``http://ADDR:PORT`` + ``path``: where a job's worker listens (its
        module's ``listen_addr``, default 127.0.0.1, and its port).
        """
        addr = self.cfg.get(job.module, "listen_addr", fallback="127.0.0.1")
        host = f"[{addr}]" if ":" in addr else addr
        return f"http://{host}:{job.port}{path}"

    def subscribe(self, observer: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``observer(event)`` on every job event; return an unsubscriber."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def wait_for_state(
        self, guid: str, states: Iterable[str], timeout: float | None = None
    ) -> Deferred[Worker]:
        """
        Fire with the job once it is in one of ``states`` (at once if it is
        already); fail with ``twisted.internet.defer.TimeoutError`` after
        ``timeout`` seconds, if one is given.
        """
        job = self.job(guid)
        wanted = set(states)
        if job.state in wanted:
            return succeed(job)

        def observe(record: dict[str, Any]) -> None:
            if record["guid"] == guid and record["kind"] == "state" and record["event"] in wanted:
                unsubscribe()
                d.callback(job)

        d: Deferred[Worker] = Deferred(lambda _: unsubscribe())
        unsubscribe = self.subscribe(observe)
        return d if timeout is None else d.addTimeout(timeout, self.reactor)

    def ready(self, guid: str, timeout: float | None = None) -> Deferred[Worker]:
        """
        Fire with the job once it answers ``GET /health``; fail with
        :class:`JobExited` if it ends first, :class:`NotReady` after
        ``timeout`` seconds (default ``ready_timeout``).
        """
        job = self.job(guid)
        if job.state == "ready":
            return succeed(job)

        def check(job: Worker) -> Worker:
            if job.state != "ready":
                raise JobExited(guid, job.status, job.last_error)
            return job

        def explain(failure: Any) -> Any:
            if failure.check(CancelledError, DeferredTimeout):
                raise NotReady(f"job {guid} not ready in time")
            return failure

        d = self.wait_for_state(guid, ("ready", *_ENDING), timeout or self.ready_timeout)
        return d.addCallbacks(check, explain)

    # -- stopping ----------------------------------------------------------

    def stop(self, guid: str, timeout: float | None = None) -> Deferred[ExitStatus | None]:
        """
        Stop a job: SIGTERM to its process group, SIGKILL after ``timeout``
        (default ``stop_timeout``). Fire with its :class:`ExitStatus` (None
        if it was not running). A pending restart is cancelled; stopping a
        stopping job just waits for it.
        """
        job = self.job(guid)
        job.asked_to_stop = True
        self._cancel(job, "restart")
        if job.state in (*ENDED, "backoff") or job.protocol is None:
            if job.state == "backoff":
                self._set_state(job, "exited")
            return succeed(job.status)
        d = self.wait_for_state(guid, ENDED).addCallback(lambda job: job.status)
        if job.state != "stopping":
            self._set_state(job, "stopping")
            self._signal(job, signal.SIGTERM)
            job._calls["kill"] = self.reactor.callLater(
                self.stop_timeout if timeout is None else timeout, self._kill, job
            )
        return d

    def _kill(self, job: Worker) -> None:
        job._calls.pop("kill", None)
        self.log.warn("job {guid} did not stop in time: SIGKILL", guid=job.guid)
        self._signal(job, signal.SIGKILL)

    def _signal(self, job: Worker, sig: int) -> None:
        if job.process is not None and job.pid is not None:
            self.launcher.signal(job.process, sig, job.pid)

    def restart(self, guid: str) -> Worker:
        """
        Start an ended (``exited`` or ``failed``) job again: same guid,
        session, token, overrides and (where it can) port, its restart
        history cleared. This is how a job given up as ``failed`` is asked
        back up. Raise :class:`RuntimeError` if it has not ended,
        :class:`UnknownModule`, :class:`NoFreePort` or :class:`SpawnFailed`
        (it then stays as it was).
        """
        job = self.job(guid)
        if job.state not in ENDED:
            raise RuntimeError(f"job {guid} is {job.state}: only an ended job can be restarted")
        self.launcher.check(job.module)
        self._spawn(job)
        if job.tracker is not None:
            job.tracker.clear()
        job.busy_ports.clear()
        return job

    # -- service -----------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """Stop every job (TERM, then KILL after ``stop_timeout``), then the pool."""
        MultiService.stopService(self)
        running = [
            self.stop(guid) for guid, job in list(self.workers.items())
            if job.protocol is not None or job.state == "backoff"  # backoff: to "exited"
        ]
        for job in self.workers.values():
            self._cancel(job, "restart")
        d = DeferredList(running, consumeErrors=True)

        def close(_: Any) -> Any:
            if self._pool is not None:
                return self._pool.closeCachedConnections()
            return None

        return d.addBoth(close)

    # -- internals ---------------------------------------------------------

    def update_config(self, guid: str, changes: Any, timeout: float = 10.0) -> Deferred[Worker]:
        """
        Change a job's overridable keys (checked as at launch), now and for
        its restarts. A ``ready`` job's worker is sent its new config
        (``POST /_proactor/config``, where its app's ``on_config`` runs); a
        ``starting`` one (it read its config already) once it is ready,
        waiting at most ``timeout``; a job in any other state takes it at
        its next start.
        Fire with the job; fail with :class:`UnknownJob`,
        :class:`OverrideNotAllowed` or :class:`TypeError` before anything
        changes, or :class:`~.client.ConfigPushFailed` if the worker did not
        take it (the change is kept, and applies from the job's next start).
        """

        async def apply() -> Worker:
            job = self.job(guid)
            checked = check_overrides(self.cfg, job.module, changes)
            job.overrides.update(checked)
            if self.cfg.has_section(guid):
                for key, value in checked.items():
                    self.cfg.set(guid, key, value.replace("$", "$$"))
            self.log.info("job {guid} config changed: {keys}", guid=guid, keys=sorted(checked))
            if job.state == "starting":
                try:
                    await self.wait_for_state(guid, {"ready", "stopping", "exited", "backoff",
                                                     "failed"}, timeout)
                except DeferredTimeout:
                    self.log.warn("job {guid} not ready in {timeout}s: it takes its new config"
                                  " at its next start", guid=guid, timeout=timeout)
                    return job
            if job.state != "ready" or job.protocol is None:
                return job
            await push_config(self.http, self.reactor, guid,
                              self.worker_url(job, "/_proactor/config"), job.token,
                              job_config_text(self.cfg, guid), timeout)
            self.log.info("job {guid} took its new config", guid=guid)
            return job

        return Deferred.fromCoroutine(apply())

    def worker_event(self, guid: str, name: str, data: Any = None) -> None:
        """Pass on an event that the job's worker posted (``kind`` "worker")."""
        job = self.job(guid)
        self.log.info("job {guid} event {name}", guid=guid, name=name)
        self._emit(job, "worker", name, data=data)

    def _emit(self, job: Worker, kind: str, event: str, **fields: Any) -> None:
        """
        Tell observers: ``{"kind": "state"|"worker", "event": <state or
        worker event name>, "guid", "module", "time", ...}``.
        """
        record = {"kind": kind, "event": event, "guid": job.guid, "module": job.module,
                  "time": self.reactor.seconds(), **fields}
        for observer in list(self._observers):
            try:
                observer(record)
            except Exception:
                self.log.failure("observer failed on {event} of job {guid}",
                                 event=event, guid=job.guid)

    def _set_state(self, job: Worker, state: str) -> None:
        if job.state == state:
            return
        job.state = state
        self.log.info("job {guid} ({module}) {state}", guid=job.guid, module=job.module,
                      state=state, port=job.port, pid=job.pid)
        self._emit(job, "state", state, port=job.port, pid=job.pid, restarts=job.restarts,
                   last_error=job.last_error)

    def _cancel(self, job: Worker, name: str) -> None:
        call = job._calls.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _on_line(self, job: Worker, stream: str, line: str) -> None:
        job.tail.append(self.reactor.seconds(), stream, line)
        self.log.info("job {guid} {stream}: {line}", guid=job.guid, stream=stream, line=line)

    def _write_section(self, job: Worker) -> None:
        section = {**section_items(self.cfg, job.module), **job.overrides}
        section.update(
            module=job.module,
            listen_port=str(job.port),
            session=job.session or "",
            parent_addr=self.listen_addr,
            parent_port=str(self.listen_port),
            token=job.token,
        )
        if self.cfg.has_section(job.guid):
            self.cfg.remove_section(job.guid)
        self.cfg.add_section(job.guid)
        # Every value is already resolved (or literal): escape it so that it
        # is never interpolated again, e.g. a session of "${other:secret}".
        for key, value in section.items():
            self.cfg.set(job.guid, key, value.replace("$", "$$"))

    def _spawn(self, job: Worker) -> None:
        """Allocate a port, write the job's section, start its process."""
        if self.cfg.has_section(job.guid):
            self.cfg.remove_section(job.guid)  # its own port is free for it again
        addr = self.cfg.get(job.module, "listen_addr", fallback="127.0.0.1")
        # A job waiting to restart keeps its port from newcomers.
        busy = job.busy_ports | {p.port for p in self.workers.values() if p is not job
                                 and (p.protocol is not None or p.state == "backoff")}

        def in_use(port: int) -> bool:
            return port_in_use(addr, port)

        # A restart keeps its last port where it can (job.port is 0 at first).
        job.port = next_port(self.cfg, self.guid, busy, in_use, prefer=job.port or None)
        self._write_section(job)
        protocol = WorkerProtocol(
            job.guid,
            job_config_text(self.cfg, job.guid).encode("utf-8"),
            lambda stream, line: self._on_line(job, stream, line),
            reactor=self.reactor,
        )
        try:
            job.process = self.launcher.spawn(protocol, job.module, job.guid, job.port)
        except SpawnFailed as exc:
            self.cfg.remove_section(job.guid)
            self.log.error("job {guid} ({module}) could not be spawned: {error}",
                           guid=job.guid, module=job.module, error=str(exc))
            raise
        job.protocol = protocol
        job.pid = protocol.pid or getattr(job.process, "pid", None)
        job.started = self.reactor.seconds()
        job.status = None
        job.asked_to_stop = False
        job.timed_out = False
        protocol.exited().addCallback(self._on_exit, job, protocol)
        self.log.info("job {guid} spawned {module} pid {pid} port {port}",
                      guid=job.guid, module=job.module, pid=job.pid, port=job.port)
        job.state = ""  # so that the next line always emits
        self._set_state(job, "starting")
        job._calls["ready_timeout"] = self.reactor.callLater(
            self.ready_timeout, self._ready_timed_out, job, protocol
        )
        Deferred.fromCoroutine(self._probe(job, protocol))

    async def _probe(self, job: Worker, protocol: WorkerProtocol) -> None:
        """Poll ``GET /health`` until it answers 200, the job ends, or time is up."""
        from twisted.internet.task import deferLater

        url = self.worker_url(job, "/health")
        delay = 0.02
        while job.protocol is protocol and job.state == "starting":
            try:
                response = await self.http.get(url, timeout=1.0, reactor=self.reactor)
                body = await response.content()
                # Another initiator's worker may hold the port this one thought free.
                code = response.code if _answer_is_from(job.guid, body) else None
            except Exception:  # not listening yet; the probe goes on
                code = None
            if code == 200:
                break
            await deferLater(self.reactor, delay, lambda: None)
            delay = min(delay * 1.5, 0.25)
        else:
            return
        if job.protocol is not protocol or job.state != "starting":
            return  # it ended, or was asked to stop, while the answer came
        self._cancel(job, "ready_timeout")
        if job.tracker is not None:
            job.tracker.ready(self.reactor.seconds())
        self._set_state(job, "ready")

    def _ready_timed_out(self, job: Worker, protocol: WorkerProtocol) -> None:
        job._calls.pop("ready_timeout", None)
        if job.protocol is protocol and job.state == "starting":
            job.timed_out = True
            self.log.warn("job {guid} not ready within {timeout}s: SIGKILL", guid=job.guid,
                          timeout=self.ready_timeout)
            self._signal(job, signal.SIGKILL)

    def _on_exit(self, status: ExitStatus, job: Worker, protocol: WorkerProtocol) -> None:
        if job.protocol is not protocol:
            return
        self._signal(job, signal.SIGKILL)  # whatever is left of its process group
        self._cancel(job, "kill")
        self._cancel(job, "ready_timeout")
        job.protocol = None
        job.status = status
        job.pid = None
        was = job.state
        self.cfg.remove_section(job.guid)
        self.log.info("job {guid} ended: {status}", guid=job.guid, status=status.describe())
        if job.asked_to_stop:
            self._set_state(job, "exited")
            return
        failed = status.code != 0 or was == "starting"
        if status.code == EXIT_PORT_IN_USE and job.tracker is not None:
            job.busy_ports.add(job.port)
            job.last_error = f"port {job.port} in use"
            if len(job.busy_ports) <= 10:
                self.log.warn("job {guid} could not bind port {port}: trying the next",
                              guid=job.guid, port=job.port)
                self._restart(job)
                return
        if failed:
            cause = f"not ready within {self.ready_timeout:g}s" if job.timed_out else (
                status.describe())
            # The reason is in this run's last stderr lines (else its stdout).
            lines = (job.tail.last(3, since=job.started, stream="stderr")
                     or job.tail.last(3, since=job.started))
            tail = " | ".join(line[:500] for line in lines)
            job.last_error = f"{cause}: {tail}" if tail else cause
        delay = job.tracker.next_restart(self.reactor.seconds(), failed) if job.tracker else None
        if delay is None:
            if job.tracker is not None and job.tracker.gave_up:
                policy = job.tracker.policy
                job.last_error = (f"gave up after {policy.max_restarts} restarts within"
                                  f" {policy.restart_window:g}s; last: "
                                  f"{job.last_error if failed else status.describe()}")
                self._set_state(job, "failed")
                return
            self._set_state(job, "failed" if failed else "exited")
            return
        self.log.info("job {guid} restarts in {delay:.2f}s", guid=job.guid, delay=delay)
        self._set_state(job, "backoff")
        job._calls["restart"] = self.reactor.callLater(delay, self._restart, job)

    def _restart(self, job: Worker) -> None:
        job._calls.pop("restart", None)
        if job.asked_to_stop:
            return
        job.restarts += 1
        try:
            self._spawn(job)
        except (NoFreePort, SpawnFailed) as exc:
            job.last_error = str(exc)
            self.log.error("job {guid} could not restart: {error}", guid=job.guid, error=str(exc))
            self._set_state(job, "failed")

    def _forget_old(self) -> None:
        ended = [g for g, j in self.workers.items() if j.state in ENDED]
        for guid in ended[: max(0, len(ended) - self.max_exited)]:
            del self.workers[guid]


#: The seed API names the job record ``Initiator.Worker``.
Initiator.Worker = Worker  # type: ignore[attr-defined]


def _answer_is_from(guid: str, body: bytes) -> bool:
    """
    Whether a health answer may be from job ``guid``: false only if it is
    JSON naming another guid (the worker runtime names its own).
    """
    try:
        named = json.loads(body).get("guid", guid)
    except (ValueError, AttributeError):
        return True
    return bool(named == guid)
