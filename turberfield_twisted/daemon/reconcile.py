"""
What the daemon runs: the jobs it starts with, and reload.

At start a :class:`Reconciler` puts back every job the durable store keeps
(wanted running: started again with the same guid, session and overrides
and a new token; stopped: shown ``exited``) and starts every declared job
(``[job:NAME]``) unless its operator stopped it. :meth:`Reconciler.reload`
reads the config files again and reconciles the declared jobs with them:
new ones start, removed ones stop, changed ones restart and unchanged ones
keep running; module sections apply from each job's next start. A bad file
changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from configparser import ConfigParser
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from turberfield_twisted.config.declared import JOB_PREFIX, DeclaredJob
from turberfield_twisted.config.services import SERVICE_PREFIX
from turberfield_twisted.config.settings import InitiatorSettings, Settings, check_config
from turberfield_twisted.configtext import origin, section_items
from turberfield_twisted.daemon.initiator import Initiator
from turberfield_twisted.daemon.store_records import JobRecord
from turberfield_twisted.errors import (
    BadOverride,
    ConfigError,
    DaemonStopping,
    Invalid,
    NoFreePort,
    OverrideNotAllowed,
    SpawnFailed,
    StoreFailed,
    UnknownModule,
)
from turberfield_twisted.jobs.job import ENDED, EventKind, Job, JobEvent, JobState, Wanted

__all__ = ["RESTART_KEYS", "ConfigRefused", "Reconciler", "Reloaded"]

#: Initiator keys a reload cannot apply: the daemon must restart for them.
RESTART_KEYS = ("listen_addr", "listen_port", "listen_backlog", "max_body", "relay_timeout",
                "read_timeout", "hook_allow", "pythonpath", "store_sync")


#: Errors that keep a job from starting, logged under its guid.
_CANNOT_START = (UnknownModule, OverrideNotAllowed, BadOverride, NoFreePort, SpawnFailed,
                 StoreFailed)


class ConfigRefused(ConfigError, Invalid):
    """A reload found the config files bad (file, line, key): nothing was changed."""


@attrs.frozen
class Reloaded:
    """
    What a reload did to the declared jobs, by name, and what it could not
    apply; what it did to the services (``services``: created, removed,
    scaled, rolled_out, unchanged), shown if there are any.
    """

    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()
    #: Keys of module sections that look like typos (file, line, key): see ``Settings``.
    warnings: tuple[str, ...] = ()
    services: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, eq=False)

    def as_json(self) -> dict[str, Any]:
        """The answer of ``POST /reload``."""
        out: dict[str, Any] = {key: list(value) for key, value in attrs.asdict(self).items()
                               if key != "services"}
        if any(self.services.values()):
            out["services"] = {key: list(value) for key, value in self.services.items()}
        return out


class Reconciler(Service):
    """
    The jobs ``initiator`` starts with (:meth:`restore`, when this service
    starts) and :meth:`reload`, which reads the config again with
    ``load()``.
    """

    log = Logger()

    def __init__(self, initiator: Initiator, load: Callable[[], ConfigParser] | None = None,
                 kept_in: str | None = None):
        self._initiator = initiator
        self._load = load
        #: Where the kept jobs are (the store's file), for the start-up log.
        self._kept_in = kept_in or "nowhere (no state store)"
        #: The initiator's settings and admin token the daemon started with (and runs on).
        self._started_with: tuple[InitiatorSettings, str] | None = None

    def startService(self) -> None:
        """Restore the kept jobs and start the declared ones."""
        Service.startService(self)
        self._runs_on()
        self.restore()

    def _runs_on(self) -> tuple[InitiatorSettings, str]:
        """
        What the daemon runs on, of the keys a reload can't apply: its
        settings and admin token as they were when it started (or, for a
        reconciler not started as a service, before its first reload).
        """
        if self._started_with is None:
            init = self._initiator
            self._started_with = (init.settings.initiator, _token(init.cfg, init.guid or ""))
        return self._started_with

    # -- at start ----------------------------------------------------------

    def restore(self) -> None:
        """
        Start each declared job (unless the store says its operator stopped
        it), then put back each job the store keeps: started again if it was
        wanted running, ``exited`` if stopped, ``failed`` (saying why) if it
        can no longer run. A kept job no longer declared is forgotten.
        """
        init = self._initiator
        kept: dict[str, JobRecord] = {job.guid: job for job in init.kept_jobs()}
        for decl in init.settings.declared.values():
            record = kept.pop(decl.name, None)
            stopped = record is not None and record.declared and record.wanted == Wanted.STOPPED
            self._declare(decl, Wanted.STOPPED if stopped else Wanted.RUNNING)
        for record in kept.values():
            if record.declared:
                self.log.info("job {guid} is no longer declared: forgotten", guid=record.guid)
                init.forget_kept(record.guid)
                continue
            self._restore(record)
        self.log.info("restored {kept} kept jobs from {store}; {declared} declared jobs",
                      kept=len([r for r in kept.values() if not r.declared]),
                      store=self._kept_in,
                      declared=len(init.settings.declared))
        init.services.restore()

    def _restore(self, record: JobRecord) -> None:
        wanted = Wanted(record.wanted)
        job = self._job(record.guid, record.module, record.session, record.overrides, wanted)
        job.port = record.port  # its port again, where it can
        if self._add(job):
            self.log.info("job {guid} restored ({module}, {wanted})", guid=job.guid,
                          module=job.module, wanted=wanted.value)

    def _declare(self, decl: DeclaredJob, wanted: Wanted) -> None:
        """Put declared job ``decl`` in the table, started unless ``wanted`` stopped."""
        job = self._job(decl.name, decl.module, decl.session, decl.overrides, wanted)
        job.declared, job.requires = True, decl.requires
        self._add(job)

    @staticmethod
    def _job(guid: str, module: str, session: str | None, overrides: Mapping[str, str],
             wanted: Wanted) -> Job:
        """A job record; one wanted stopped is shown ``exited`` (it emits no event)."""
        state = JobState.EXITED if wanted is Wanted.STOPPED else JobState.WAITING
        return Job(guid=guid, port=0, session=session, module=module, state=state,
                   token=secrets.token_urlsafe(32), overrides=dict(overrides), wanted=wanted)

    def _add(self, job: Job) -> bool:
        """
        Put ``job`` in the table, started if it is wanted running, as
        :meth:`Initiator.launch` would. One whose module or overrides can't
        run is shown ``failed``, saying why: False.
        """
        init = self._initiator
        try:
            job.tracker, job.overrides = init.admit(job.module, job.overrides)
        except (UnknownModule, OverrideNotAllowed, BadOverride) as exc:
            self._cannot_start(job, str(exc))
            return False
        try:
            init.add(job)
        except _CANNOT_START as exc:
            if job.guid not in init.workers:  # it never started: say why
                self._cannot_start(job, str(exc))
            else:
                self.log.error("job {guid} could not start: {error}", guid=job.guid,
                               error=str(exc))
        return True

    def _cannot_start(self, job: Job, error: str) -> None:
        """Show ``job`` (wanted running) as ``failed``, saying why."""
        init = self._initiator
        job.last_error = f"could not be started: {error}"
        self.log.error("job {guid} {error}", guid=job.guid, error=job.last_error)
        try:
            init.add(job, start=False)
        except StoreFailed as exc:
            self.log.error("job {guid}: {error}", guid=job.guid, error=str(exc))
            return  # not kept: not shown either
        init.give_up(job)

    # -- reload ------------------------------------------------------------

    def reload(self) -> Reloaded:
        """
        Read the config files again and reconcile the declared jobs with
        them. Raise :class:`ConfigRefused` (file, line, key; never a value)
        and change nothing if they are bad; :class:`DaemonStopping` once the
        daemon stops.
        """
        init = self._initiator
        if self._load is None:
            raise ConfigRefused("this initiator has no config files to read again")
        if init.stopping:
            raise DaemonStopping()
        if not init.running:
            raise ConfigRefused("the daemon is not running: not reloaded")
        guid = init.guid
        if guid is None:
            raise ConfigRefused("this initiator has no guid: no section of its own to read")
        try:
            cfg = self._load()
            settings = check_config(cfg, guid)
            self._check_against_jobs(cfg, settings)
        except ConfigError as exc:
            raise ConfigRefused(exc.reason, exc.source, exc.line) from None
        running, running_token = self._runs_on()
        old, old_cfg = init.settings, init.cfg
        init.reconfigure(cfg, settings)
        for job in init.workers.values():
            module = settings.module(job.module)
            if job.tracker is not None and module is not None:
                job.tracker.policy = module.policy  # from its next restart
        done = self._reconcile(old.declared, settings.declared)
        changed = frozenset(name for name in settings.modules
                            if section_items(old_cfg, name) != section_items(cfg, name))
        services = init.services.reload(old, settings, changed)
        # Compared with what the daemon runs on, not with the last reload.
        needed = tuple(key for key in RESTART_KEYS
                       if getattr(running, key) != getattr(settings.initiator, key))
        if running_token != _token(cfg, guid):
            needed += ("admin_token",)
        result = attrs.evolve(done, restart_needed=needed, warnings=settings.warnings,
                              services={key: tuple(names) for key, names in services.items()})
        for warning in settings.warnings:
            self.log.warn("config reloaded: {warning}", warning=warning)
        self.log.info("config reloaded: started {started}; stopped {stopped}; restarted"
                      " {restarted}; unchanged {unchanged}",
                      started=_names(done.started), stopped=_names(done.stopped),
                      restarted=_names(done.restarted), unchanged=_names(done.unchanged))
        if needed:
            self.log.warn("config reloaded: restart the daemon to apply {keys}",
                          keys=", ".join(needed))
        return result

    def _check_against_jobs(self, cfg: ConfigParser, settings: Settings) -> None:
        """A section may not name a job that runs; a declared name, a job launched otherwise."""
        workers = self._initiator.workers
        for name in cfg.sections():
            if name in workers and workers[name].state not in ENDED:
                source, line = origin(cfg, name)
                raise ConfigError(f"section [{name}] names a job that runs", source, line)
        for name, decl in settings.declared.items():
            job = workers.get(name)
            if job is not None and not job.declared and job.state not in ENDED:
                raise ConfigError(f"[{JOB_PREFIX}{name}] names a job launched through the API,"
                                  " which runs", decl.source, decl.line)
        groups = self._initiator.services.groups
        for name, service in settings.services.items():
            if name in groups and not groups[name].spec.declared:
                raise ConfigError(f"[{SERVICE_PREFIX}{name}] names a service made through the"
                                  " API", service.source, service.line)

    def _reconcile(self, old: Mapping[str, DeclaredJob],
                   new: Mapping[str, DeclaredJob]) -> Reloaded:
        init = self._initiator
        started, stopped, restarted, unchanged = [], [], [], []
        for name in old.keys() - new.keys():
            job = init.workers.get(name)
            if job is not None:
                job.declared, job.requires = False, ()
                if job.state not in ENDED:
                    init.stop(name, operator=False)
            init.forget_kept(name)
            stopped.append(name)
        for name, decl in new.items():
            if name not in old:
                self._declare(decl, Wanted.RUNNING)
                started.append(name)
            elif old[name] != decl:
                self._redeclare(decl)
                restarted.append(name)
            else:
                unchanged.append(name)
        return Reloaded(tuple(sorted(started)), tuple(sorted(stopped)),
                        tuple(sorted(restarted)), tuple(sorted(unchanged)))

    def _redeclare(self, decl: DeclaredJob) -> None:
        """A declared job's section changed: stop it, then start it as it now says."""
        stopped = self._initiator.stop(decl.name, operator=False)  # an ended job: at once
        stopped.addBoth(lambda _: self._start_again(decl.name))

    def _start_again(self, name: str) -> None:
        """Take ``name``'s declaration as it is now; start it if it is wanted running."""
        init = self._initiator
        decl = init.settings.declared.get(name)
        job = init.workers.get(name)
        if decl is None or job is None or job.state not in ENDED:
            return  # no longer declared, or started since
        job.module, job.session, job.requires = decl.module, decl.session, decl.requires
        job.overrides = dict(decl.overrides)
        try:
            init.keep(job)
            if job.wanted is Wanted.RUNNING and init.running and not init.stopping:
                init.restart(name)
        except _CANNOT_START as exc:
            job.last_error = f"could not be started: {exc}"
            self.log.error("job {guid} {error}", guid=name, error=job.last_error)

    # -- readiness -----------------------------------------------------------

    def settled(self) -> Deferred[None]:
        """
        Fire once every declared job wanted running has got as far as it
        will for now: ready, ended, in backoff, or waiting for a job that
        is not going to be ready.
        """
        init = self._initiator
        seen: set[str] = set()
        d: Deferred[None] = Deferred()

        def check(event: JobEvent | None = None) -> None:
            if event is not None:
                if event.kind is not EventKind.STATE or event.state in (
                        JobState.WAITING, JobState.STARTING):
                    return  # one on its way to ready settles nothing
                seen.add(event.guid)
            if not d.called and _settled(init.workers, init.settings.declared, seen):
                unsubscribe()
                d.callback(None)

        unsubscribe = init.subscribe(check)
        check()
        return d


def _settled(workers: Mapping[str, Job], declared: Mapping[str, DeclaredJob],
             seen: set[str]) -> bool:
    """Whether no declared job is still on its way to ready (see Reconciler.settled)."""
    done = {name for name in declared
            if name in seen or name not in workers
            or workers[name].state not in (JobState.WAITING, JobState.STARTING)}
    changed = True
    while changed:  # a job waiting for one that has settled but is not ready is settled too
        changed = False
        for name in set(declared) - done:
            job = workers[name]
            if job.state is JobState.WAITING and any(
                    other in done and workers[other].state is not JobState.READY
                    for other in job.requires if other in workers):
                done.add(name)
                changed = True
    return done >= set(declared)


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) or "none"


def _token(cfg: ConfigParser, guid: str) -> str:
    return str(cfg.get(guid, "admin_token", fallback=""))
