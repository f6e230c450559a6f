"""
The Initiator: a Service holding the job table, the seed API
(``launch``, ``next_port``, ``read_config``) and the observers of job
events. Each job's life (ports, admission, spawn, readiness, exits,
restarts, stop) is :class:`~turberfield_twisted.jobs.lifecycle.Lifecycle`'s
work; where a worker runs is its :class:`~turberfield_twisted.launch.interfaces.ILauncher`'s.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import Callable, Iterable
from configparser import DEFAULTSECT
from typing import IO, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger

from turberfield_twisted.config.job_section import check_overrides, render_job_config
from turberfield_twisted.config.names import GUID
from turberfield_twisted.config.settings import Settings, check_config
from turberfield_twisted.contract import HEALTH_PATH
from turberfield_twisted.daemon.keeper import Keeper
from turberfield_twisted.daemon.live_config import update_config
from turberfield_twisted.errors import BadGuid, ConfigError, StoreFailed, UnknownModule
from turberfield_twisted.jobs.job import ENDED, EventKind, Job, JobEvent, JobState, Wanted
from turberfield_twisted.jobs.lifecycle import Lifecycle
from turberfield_twisted.jobs.limits import MemoryWatch
from turberfield_twisted.jobs.readiness import make_probe, only_ready
from turberfield_twisted.jobs.supervision import RestartTracker
from turberfield_twisted.jobs.table import JobTable
from turberfield_twisted.launch.interfaces import ILauncher
from turberfield_twisted.launch.ports import next_port
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.launch.router import default_launcher
from turberfield_twisted.worker.parent import make_http
from turberfield_twisted.worker.proactor import Proactor

__all__ = ["Initiator"]

class Initiator(JobTable, Proactor, Service):
    """
    Launch modules as worker processes and look after them.

    Its config (``cfg=``, or :meth:`read_config`) holds its own section,
    named by its ``guid`` (``guid=`` or ``options.guid``), and one section
    per module that may be launched; it is checked whole when the service
    starts or the first job is launched. Keyword arguments: ``reactor``,
    ``cfg``, ``guid``, ``launcher`` (an :class:`ILauncher`), ``http`` (a
    treq-like client), ``random`` (draws restart jitter), ``store`` (a
    :class:`~.store.Store`, where what the operator wants of each job is
    kept before a launch, stop, restart or config change returns).
    """

    log = Logger()
    #: The seed API's name for a job record.
    Worker = Job

    def __init__(self, options: Any, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        guid = kwargs.pop("guid", None) or getattr(options, "guid", None)
        self._launcher: ILauncher | None = kwargs.pop("launcher", None)
        http = kwargs.pop("http", None)
        self._random: Callable[[], float] = kwargs.pop("random", None) or random.random
        #: Keeps what the operator wants of each job in the store (if one is given).
        self.keeper = Keeper(kwargs.pop("store", None))
        Proactor.__init__(self, options, loop, **kwargs)
        JobTable.__init__(self)
        self.guid: str | None = guid
        self._pool: Any = None
        self._probe_pool: Any = None
        if http is None:
            http, self._pool = make_http(self.reactor)
        self.http = http
        #: Where the control API listens, once it does: what workers call back.
        self.api_address: tuple[str, int] | None = None
        self._settings: Settings | None = None
        self._lifecycle: Lifecycle | None = None
        self._watch = MemoryWatch(self.reactor, self.workers.values,
                                  lambda job, why: self.lifecycle.over_limit(job, why),
                                  lambda: self.settings.initiator.limit_interval)

    # -- config ------------------------------------------------------------

    async def read_config(self, fObj: IO[Any], timeout: float | None = 3) -> Any:
        """Read the config from ``fObj`` (see :meth:`Proactor.read_config`); checked when used."""
        cfg = await Proactor.read_config(self, fObj, timeout)
        self._settings = None
        return cfg

    @property
    def settings(self) -> Settings:
        """The checked config; raise :class:`ConfigError` saying what is missing or wrong."""
        if self._settings is None:
            if not self.guid:
                raise ConfigError("the initiator has no guid: pass guid= or options.guid")
            self._settings = check_config(self.cfg, self.guid, skip=self.workers)
        return self._settings

    def reconfigure(self, cfg: Any, settings: Settings) -> None:
        """
        Run on ``cfg`` (checked as ``settings``) from now on: a reload. The
        launcher, if made and if it can, reloads too (warm templates start
        afresh, importing the modules as they are now).
        """
        self.cfg, self._settings = cfg, settings
        if self._launcher is not None:
            getattr(self._launcher, "reload", lambda _: None)(list(settings.modules))

    @property
    def launcher(self) -> ILauncher:
        """Where workers run: unless one was given, :func:`.launchers.default_launcher`'s."""
        if self._launcher is None:
            self._launcher = default_launcher(self.reactor, lambda: self.settings)
        return self._launcher

    @property
    def lifecycle(self) -> Lifecycle:
        """The machine that drives every job."""
        if self._lifecycle is None:
            given = None if self._pool is not None else self.http
            probe, self._probe_pool = make_probe(self.reactor, given)
            self._lifecycle = Lifecycle(
                self.reactor, self.launcher, lambda: self.settings,
                probe=lambda job: probe.wait(job.guid, job.url(HEALTH_PATH),
                                             job.process.listening()),
                render=self._render, emit=self._emit, gate=self.required_ready,
                output=self._output.emit)
        return self._lifecycle

    def listening(self, host: str, port: int) -> None:
        """The control API listens at ``host``:``port``: workers call back there."""
        self.api_address = (host, port)
        self.lifecycle.ports.reserved.add(port)

    def _render(self, job: Job) -> bytes:
        """Write ``job``'s section; the config its worker reads on stdin."""
        own = self.settings.initiator
        parent = self.api_address or (own.listen_addr, own.listen_port)
        return render_job_config(self.cfg, job.guid, job.module, job.overrides, port=job.port,
                                 session=job.session, parent=parent, token=job.token).encode()

    # -- the seed API ------------------------------------------------------

    @staticmethod
    def next_port(cfg: Any, guid: str, busy: Iterable[int] = frozenset()) -> int:
        """The seed API's port choice: see :func:`turberfield_twisted.launch.ports.next_port`."""
        return next_port(cfg, guid, busy)

    async def launch(self, module: str, guid: str | None = None, session: str | None = None,
                     config: dict[str, Any] | None = None) -> str:
        """
        Start ``module`` as a job and return its guid. ``config`` holds
        per-job overrides of keys its module section lists as
        ``overridable``. The job waits for a starting slot if
        ``max_starting`` jobs are starting.

        Raise :class:`UnknownModule`, :class:`OverrideNotAllowed`,
        :class:`BadOverride`, :class:`BadGuid` or :class:`NoFreePort` (no
        job is made), or :class:`SpawnFailed` (the job is ``failed``).
        """
        tracker, overrides = self.admit(module, config)
        job = Job(guid=self._new_guid(guid), port=0, session=session, module=module,
                  token=secrets.token_urlsafe(32), overrides=overrides, tracker=tracker)
        return self.add(job).guid

    def add(self, job: Job, start: bool = True) -> Job:
        """
        Put ``job`` (new, declared or restored) in the table, ``start`` it if
        it is wanted running and waiting, and keep it in the store; raise as
        :meth:`launch` does, or :class:`StoreFailed` (it is stopped).
        """
        self.workers[job.guid] = job
        try:
            if start and job.wanted is Wanted.RUNNING and job.state is JobState.WAITING:
                self.lifecycle.start(job, new=True)
        except BaseException:
            if job.state is JobState.WAITING:
                del self.workers[job.guid]  # it never started: it never was
            raise
        finally:
            for guid in self.forget_ended(keep=self.settings.initiator.max_exited):
                self.keeper.forget(guid)
        try:
            self.keeper.keep(job)
        except StoreFailed:
            self.lifecycle.stop(job)
            raise
        return job

    def admit(self, module: str, config: Any) -> tuple[RestartTracker, dict[str, str]]:
        """:meth:`runnable`, and ``config`` checked as its overrides (raise as :meth:`launch`)."""
        return self.runnable(module), check_overrides(self.cfg, module, config)

    def runnable(self, module: str) -> RestartTracker:
        """A new restart history for a job of ``module``; UnknownModule if it can't run."""
        found = self.settings.module(module)
        if found is None:
            raise UnknownModule(module, "no config section allows it")
        self.launcher.check(module)
        return RestartTracker(found.policy, self._random)

    def _new_guid(self, guid: str | None) -> str:
        if guid is None:
            return uuid.uuid4().hex
        if (not GUID.accepts(guid) or guid in self.workers
                or guid == DEFAULTSECT or self.cfg.has_section(guid)):
            raise BadGuid(f"guid {str(guid)[:80]!r} is malformed, taken or names a config section")
        return guid

    # -- asking jobs (queries: see JobTable) ---------------------------------

    def ready(self, guid: str, timeout: float | None = None) -> Deferred[Job]:
        """
        Fire with the job once it is ``ready``; fail with :class:`JobExited`
        if it stops or ends first, :class:`NotReady` after ``timeout``
        seconds (default: ``ready_timeout``).
        """
        wait = timeout or self.settings.initiator.ready_timeout
        ending = (JobState.READY, JobState.STOPPING, *ENDED)
        return only_ready(guid, self.wait_for_state(guid, ending, wait))

    def stop(self, guid: str, timeout: float | None = None,
             operator: bool = True) -> Deferred[ExitStatus | None]:
        """
        Stop a job: SIGTERM to its process group, SIGKILL after ``timeout``
        (default ``stop_timeout``); one waiting or in backoff just ends.
        Fire with its :class:`ExitStatus` (None if it had no process). The
        ``operator`` asks it: it stays stopped when the daemon restarts
        (kept first: :class:`StoreFailed` and it runs on).
        """
        job = self.job(guid)
        if operator:
            self.keeper.want(job, Wanted.STOPPED)
        d = self.wait_for_state(guid, ENDED).addCallback(lambda job: job.status)
        self.lifecycle.stop(job, timeout)
        return d

    def restart(self, guid: str) -> Job:
        """
        Start a job again: same guid, session, token and overrides, its port
        again where it can, its restart history cleared. One that runs is
        stopped first (TERM, then KILL after ``stop_timeout``) and started
        once it has exited. Raise :class:`UnknownModule` or
        :class:`NoFreePort` (it stays as it was), or :class:`SpawnFailed`
        (it is ``failed``).
        """
        job = self.job(guid)
        job.tracker = self.runnable(job.module)
        self.keeper.want(job, Wanted.RUNNING)
        job.busy_ports.clear()
        self.lifecycle.restart(job)
        return job

    def worker_event(self, guid: str, name: str, data: Any = None) -> None:
        """Pass on an event that the job's worker posted (kind ``worker``)."""
        job = self.job(guid)
        self.log.info("job {guid} event {name}", guid=guid, name=name)
        self._emit(job.event(self.reactor.seconds(), EventKind.WORKER, name, data))

    def update_config(self, guid: str, changes: Any, timeout: float = 10.0) -> Deferred[Job]:
        """Change a job's overridable keys, live: see :func:`.live_config.update_config`."""
        return Deferred.fromCoroutine(update_config(self, self.cfg, self.http, self.reactor, guid,
                                                    changes, timeout, self.keeper.keep))

    def _emit(self, event: JobEvent) -> None:
        if event.kind is EventKind.STATE and event.state in ENDED:
            self.cfg.remove_section(event.guid)
        self._observers.emit(event)

    # -- service -----------------------------------------------------------

    def startService(self) -> None:
        """Check the config (raise :class:`ConfigError`), start warm templates, then run."""
        self.lifecycle  # noqa: B018 (builds it, checking the config)
        getattr(self.launcher, "prepare", lambda _: None)(list(self.settings.modules))
        Service.startService(self)
        self._watch.start()

    def stopService(self) -> Deferred[None]:
        """Stop every job (TERM, then KILL after ``stop_timeout``), then the pools."""
        Service.stopService(self)
        self._watch.stop()
        stops = []
        if self._lifecycle is not None:
            self._lifecycle.admission.closed = True  # nothing new starts from now on
            stops = [self.stop(guid, operator=False) for guid, job in list(self.workers.items())
                     if job.state not in ENDED]

        def close(_: Any) -> Any:  # the pools, and the launcher's templates
            return DeferredList([maybeDeferred(getattr(self._launcher, "close", lambda: None)),
                                 *(pool.closeCachedConnections()
                                   for pool in (self._pool, self._probe_pool) if pool)])

        return DeferredList(stops, consumeErrors=True).addBoth(close)
