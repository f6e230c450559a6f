"""
The Initiator: a Service holding the job table, the seed API
(``launch``, ``next_port``, ``read_config``) and the observers of job
events. Each job's life (ports, admission, spawn, readiness, exits,
restarts, stop) is :class:`~turberfield_twisted.jobs.lifecycle.Lifecycle`'s
work; where a worker runs is its :class:`~turberfield_twisted.launch.interfaces.ILauncher`'s;
what the operator wants of each job is kept by its
:class:`~turberfield_twisted.daemon.keeper.Keeper`; its services
(:class:`~turberfield_twisted.services.registry.Services`) start their
instances as its jobs. All four are made when the Initiator is; none
reads the config before it is used.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import Callable, Iterable
from configparser import DEFAULTSECT, ConfigParser
from typing import IO, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from turberfield_twisted.config.job_section import check_overrides
from turberfield_twisted.config.names import GUID
from turberfield_twisted.config.settings import Settings
from turberfield_twisted.contract import CONFIG_PATH, HEALTH_PATH
from turberfield_twisted.daemon.initiator_config import InitiatorConfig
from turberfield_twisted.daemon.instances import Instances
from turberfield_twisted.daemon.job_config import JobConfigs
from turberfield_twisted.daemon.keeper import Keeper
from turberfield_twisted.daemon.live_config import push_config, update_config
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import JobRecord
from turberfield_twisted.daemon.upkeep import Upkeep
from turberfield_twisted.errors import (
    BadGuid,
    DaemonStopping,
    NoFreePort,
    StoreFailed,
    UnknownModule,
)
from turberfield_twisted.jobs.job import ENDED, EventKind, Job, JobEvent, JobState, Wanted
from turberfield_twisted.jobs.lifecycle import Lifecycle
from turberfield_twisted.jobs.limits import MemoryWatch
from turberfield_twisted.jobs.readiness import make_probe, only_ready
from turberfield_twisted.jobs.supervision import RestartTracker
from turberfield_twisted.jobs.table import JobTable
from turberfield_twisted.jobs.transitions import Input
from turberfield_twisted.launch.interfaces import ILauncher
from turberfield_twisted.launch.ports import next_port
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.router import default_launcher
from turberfield_twisted.launch.slurm.nodes import NodeBook
from turberfield_twisted.launch.slurm.spread import Spread
from turberfield_twisted.services.registry import Services
from turberfield_twisted.worker.parent import HttpClient, LazyHttp
from turberfield_twisted.worker.proactor import Proactor

__all__ = ["Initiator"]


class Initiator(InitiatorConfig, JobTable, Proactor, Service):
    """
    Launch modules as worker processes and look after them.

    Its config (``cfg=``, or :meth:`read_config`) holds its own section,
    named by its ``guid`` (``guid=`` or ``options.guid``), and one section
    per module that may be launched; it is checked whole when the service
    starts or the first job is launched (unless ``settings=`` gives it
    checked already). Keyword arguments: ``reactor``, ``cfg``, ``settings``,
    ``guid``, ``launcher`` (an :class:`ILauncher`; default:
    :func:`~turberfield_twisted.launch.router.default_launcher`'s), ``http``
    (a treq-like client), ``random`` (draws restart jitter), ``store`` (a
    :class:`~.store.Store`, where what the operator wants of each job is
    kept before a launch, stop, restart or config change returns),
    ``slurm_nodes`` (the :class:`NodeBook` its Slurm launcher keeps node
    failures in; a new one if not given).
    """

    log = Logger()
    #: The seed API's name for a job record.
    Worker = Job
    reactor: IDaemonReactor

    def __init__(self, options: Any, loop: asyncio.AbstractEventLoop | None = None,
                 **kwargs: Any):
        guid = kwargs.pop("guid", None) or getattr(options, "guid", None)
        launcher: ILauncher | None = kwargs.pop("launcher", None)
        http: HttpClient | None = kwargs.pop("http", None)
        self._random: Callable[[], float] = kwargs.pop("random", None) or random.random
        store: Store | None = kwargs.pop("store", None)
        nodes: NodeBook | None = kwargs.pop("slurm_nodes", None)
        self._settings: Settings | None = kwargs.pop("settings", None)
        Proactor.__init__(self, options, loop, **kwargs)
        JobTable.__init__(self)
        self.guid: str | None = guid
        self._keeper = Keeper(store)
        self.forgotten = self._keeper.forgotten  #: Called with each guid it forgets.
        self._stopping = False
        probe = make_probe(self.reactor, http)
        given = http
        self._own_http: LazyHttp | None = None
        if http is None:
            http = self._own_http = LazyHttp(self.reactor)
        #: The treq-like client it reaches workers with (built on first use, unless given).
        self.http: HttpClient = http
        #: Slurm nodes that failed jobs, and what each excludes (``GET /slurm/nodes``).
        self.slurm_nodes = nodes or NodeBook.of(self.reactor.seconds, self._checked)
        #: Which Slurm node each instance of a service that spreads is sent to.
        self.slurm_spread = Spread(siblings=lambda guid: self.services.spread_siblings(guid))
        #: Where workers run.
        self.launcher: ILauncher = launcher or default_launcher(
            self.reactor, self._checked, self.slurm_nodes, self.slurm_spread)
        self._configs = JobConfigs(lambda: self.cfg, self._checked)
        self._lifecycle = Lifecycle(
            self.reactor, self.launcher, self._checked,
            probe=lambda job: probe.wait(job.guid, job.url(HEALTH_PATH), _listening(job),
                                         job.module),
            render=self._configs.render, emit=self._emit, gate=self._may_start,
            output=self._output.emit)
        self.slurm_spread.opened = self._lifecycle.gate_opened
        self._watch = MemoryWatch(self.reactor, self.workers.values, self._lifecycle.over_limit,
                                  lambda: self._checked().initiator.limit_interval)
        #: Its services: groups of jobs of one module on one shared socket.
        self.services = Services(Instances(self), self._keeper, self._checked)
        self.upkeep = Upkeep(self, self._lifecycle, given)  # liveness, recycling

    def _may_start(self, job: Job) -> bool:
        """Whether ``job``'s required jobs are ready, and the nodes it spreads over known."""
        return self.required_ready(job) and self.slurm_spread.known_for(job.guid)

    # -- config ------------------------------------------------------------

    async def read_config(self, fObj: IO[Any], timeout: float | None = 3) -> ConfigParser:
        """Read the config from ``fObj`` (see :meth:`Proactor.read_config`); checked when used."""
        cfg = await Proactor.read_config(self, fObj, timeout)
        self._settings = None
        return cfg

    # -- the seed API ------------------------------------------------------

    @staticmethod
    def next_port(cfg: ConfigParser, guid: str, busy: Iterable[int] = frozenset()) -> int:
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
        :class:`BadOverride`, :class:`BadGuid`, :class:`NoFreePort`,
        :class:`StoreFailed` or :class:`DaemonStopping` (no job is made),
        or :class:`SpawnFailed` (the job is ``failed``).
        """
        self._refuse_while_stopping()
        tracker, overrides = self.admit(module, config)
        job = Job(guid=self._new_guid(guid), port=0, session=session, module=module,
                  token=secrets.token_urlsafe(32), overrides=overrides, tracker=tracker)
        return self.add(job).guid

    def add(self, job: Job, start: bool = True) -> Job:
        """
        Keep ``job`` (new, declared or restored) in the store, put it in the
        table and ``start`` it if it is wanted running and waiting: kept
        first, so a :class:`StoreFailed` leaves nothing (no job, process or
        event); raise as :meth:`launch` does.
        """
        try:
            if not (start and job.wanted is Wanted.RUNNING and job.state is JobState.WAITING):
                self._keeper.keep(job)
                self.workers[job.guid] = job
                return job
            self.workers[job.guid] = job
            try:
                self._lifecycle.start(job, new=True, keep=lambda: self._keeper.keep(job))
            except BaseException:
                if job.state is JobState.WAITING:
                    del self.workers[job.guid]  # it never started: it never was
                raise
            return job
        finally:
            if self.workers.get(job.guid) is job:
                self._forget_ended()

    def _forget_ended(self) -> None:
        """The table and the store forget the ended jobs past ``max_exited``."""
        try:
            self.forget_ended(self.settings.initiator.max_exited, self._keeper.forget)
        except StoreFailed as exc:  # the rest stay in the table, as in the store
            self.log.error("ended jobs stay past max_exited: {error}", error=str(exc))

    def admit(self, module: str, config: object) -> tuple[RestartTracker, dict[str, str]]:
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

    def _refuse_while_stopping(self) -> None:
        if self._stopping:
            raise DaemonStopping()

    def give_up(self, job: Job) -> None:
        """``job``, waiting in the table, can't be started: it is ``failed``."""
        if job.state is JobState.WAITING:
            self._lifecycle.fire(job, Input.GIVE_UP)

    # -- what the store keeps ------------------------------------------------

    def kept_jobs(self) -> list[JobRecord]:
        """The jobs the store keeps (none without a store): a restarted daemon restores them."""
        return self._keeper.kept()

    def keep(self, job: Job) -> None:
        """Keep ``job`` in the store as it is now; raise :class:`StoreFailed` if it can't be."""
        self._keeper.keep(job)

    def forget_kept(self, guid: str) -> None:
        """The store forgets job ``guid`` (the table is left as it is), as do the Slurm nodes
        excluded for it."""
        self._keeper.forget(guid)
        self.slurm_nodes.forget(guid)

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
        (kept first: :class:`StoreFailed` and it runs on), and it is refused
        (:class:`DaemonStopping`) once the daemon stops.
        """
        job = self.job(guid)
        if operator:
            self._refuse_while_stopping()
            self._keeper.want(job, Wanted.STOPPED)
        d = self.wait_for_state(guid, ENDED).addCallback(lambda job: job.status)
        self._lifecycle.stop(job, timeout)
        return d

    def restart(self, guid: str) -> Job:
        """
        Start a job again: same guid, session, token and overrides, its port
        again where it can, its restart history cleared. One that runs is
        stopped first (TERM, then KILL after ``stop_timeout``) and started
        once it has exited. Raise :class:`UnknownModule`,
        :class:`NoFreePort`, :class:`StoreFailed` or :class:`DaemonStopping`
        (it stays as it was), or :class:`SpawnFailed` (it is ``failed``).
        """
        job = self.job(guid)
        self._refuse_while_stopping()
        tracker = self.runnable(job.module)

        def keep() -> None:  # before anything changes
            self._keeper.want(job, Wanted.RUNNING)
            job.tracker = tracker

        busy, job.busy_ports = job.busy_ports, set()
        try:
            self._lifecycle.restart(job, keep)
        except (StoreFailed, NoFreePort):
            job.busy_ports = busy
            raise
        return job

    def worker_event(self, guid: str, name: str, data: Any = None) -> None:
        """Pass on an event that the job's worker posted (kind ``worker``)."""
        job = self.job(guid)
        self.log.info("job {guid} event {name}", guid=guid, name=name)
        self._emit(job.event(self.reactor.seconds(), EventKind.WORKER, name, data))

    def update_config(self, guid: str, changes: object, timeout: float = 10.0) -> Deferred[Job]:
        """
        Change a job's overridable keys, live: see :func:`.live_config.update_config`
        (raise :class:`DaemonStopping` once the daemon stops).
        """
        self._refuse_while_stopping()

        async def push(job: Job, overrides: dict[str, str]) -> None:
            await push_config(self.http, self.reactor, job.guid, job.url(CONFIG_PATH), job.token,
                              self._configs.text(job, overrides), timeout)

        return Deferred.fromCoroutine(update_config(self, self.cfg, guid, changes, push=push,
                                                    keep=self._keeper.keep, timeout=timeout))

    def announce(self, event: JobEvent) -> None:
        """Tell every observer of ``event`` (a service's own, say)."""
        self._emit(event)

    def _emit(self, event: JobEvent) -> None:
        job = self.workers.get(event.guid)
        if job is not None and event.kind is EventKind.STATE and event.state in ENDED:
            self._configs.ended(job)
        self._observers.emit(event)

    # -- service -----------------------------------------------------------

    def startService(self) -> None:
        """Check the config (raise :class:`ConfigError`), start warm templates, then run."""
        self.launcher.prepare(list(self.settings.modules))
        Service.startService(self)
        self._watch.start()

    @property
    def stopping(self) -> bool:
        """Whether the daemon has begun to stop (see :meth:`begin_stopping`)."""
        return self._stopping

    def begin_stopping(self) -> None:
        """
        The daemon has begun to stop: from now on every change asked of it
        (a launch, an operator's stop or restart, a config change) raises
        :class:`DaemonStopping`, and of every service too (a rollout that
        runs stops where it is). :meth:`stopService` says so first too.
        """
        self._stopping = True
        self.services.close()

    def stopService(self) -> Deferred[None]:
        """Stop every job (TERM, then KILL after ``stop_timeout``), then the pools."""
        self.begin_stopping()
        Service.stopService(self)
        self._watch.stop()
        self.upkeep.close()
        self._lifecycle.close()  # nothing new starts from now on
        stops = [self.stop(guid, operator=False) for guid, job in list(self.workers.items())
                 if job.state not in ENDED]

        def close(_: object) -> Deferred[list[tuple[bool, None]]]:  # pools, templates
            self.services.release()  # their instances have ended: their sockets close
            own = [self._own_http.close()] if self._own_http is not None else []
            return DeferredList([self.launcher.close(), *own])

        return DeferredList(stops, consumeErrors=True).addBoth(close).addCallback(
            lambda _: None)


def _listening(job: Job) -> Deferred[str | None] | None:
    """When ``job``'s worker says it listens (None if it has no process)."""
    return None if job.process is None else job.process.listening()
