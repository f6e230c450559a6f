"""
The watch mode, for development: a module whose section says ``watch =
true`` has its jobs restarted when its source changes.

Changes come from inotify through :mod:`twisted.internet.inotify` (on the
reactor: no thread, no polling; Linux, where the daemon runs), for the
module's top package (every directory in it) or, for a top-level module,
its directory; only ``.py`` files count. A burst of changes (an editor's
save: create, write, rename) is taken as one after ``debounce`` seconds
without another. Then the module is imported in a throwaway process
(:func:`~.importcheck.check_import`): only if that is clean are its jobs
restarted (those its operator wants running; each service of the module
is rolled out, one instance at a time, never all at once). A failed
import restarts nothing: the error is logged once and told once as an
event of each of its jobs (``watch:import-failed``, a worker-kind event:
the code is the worker's), until the source changes to another error, or
imports cleanly (then it restarts once). A change while a check runs is
checked after it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from turberfield_twisted.config.logs import watched
from turberfield_twisted.config.settings import Settings
from turberfield_twisted.daemon.importcheck import (
    Source,
    check_import,
    drop_bytecode,
    source_of,
    worker_path,
)
from turberfield_twisted.daemon.initiator import Initiator
from turberfield_twisted.jobs.job import Wanted
from turberfield_twisted.launch.local import minimal_env
from turberfield_twisted.launch.reactor import IDaemonReactor

__all__ = ["DEBOUNCE", "EVENT_FAILED", "EVENT_RESTART", "Watcher", "watched_modules"]

#: Quiet seconds after a change before the module is checked.
DEBOUNCE = 0.5

#: The events told of each job of a watched module (kind ``worker``).
EVENT_RESTART, EVENT_FAILED = "watch:restart", "watch:import-failed"


def watched_modules(settings: Settings) -> list[str]:
    """The modules whose section says ``watch = true``."""
    return watched(settings.modules)


@attrs.define
class _Watched:
    """One watched module: its pending debounce, whether a check runs, its last error shown."""

    module: str
    debounce: IDelayedCall | None = None
    checking: bool = False
    again: bool = False
    changed: set[str] = attrs.field(factory=set)
    #: Every file changed since its jobs last restarted (failed checks' files too).
    unrestarted: set[str] = attrs.field(factory=set)
    shown: str | None = None


class Watcher(Service):
    """
    Watch the source of each module of ``initiator``'s config that says
    ``watch = true`` (at start), and restart its jobs as above; every timer
    on ``reactor``; ``check_timeout`` bounds each throwaway import.
    """

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, initiator: Initiator,
                 debounce: float = DEBOUNCE, check_timeout: float = 20.0):
        self._reactor = reactor
        self._initiator = initiator
        self._debounce = debounce
        self._check_timeout = check_timeout
        self._watched: dict[str, _Watched] = {}
        self._notifier: Any = None
        self._env = minimal_env(initiator.settings.initiator.pythonpath)
        #: Fires once every watch is set (a test waits on it before it edits a file).
        self.watching: Deferred[list[str]] = Deferred()

    def startService(self) -> None:
        Service.startService(self)
        modules = watched_modules(self._initiator.settings)
        if not modules:
            self.watching.callback([])
            return
        Deferred.fromCoroutine(self._start(modules)).addErrback(self._not_started)

    async def _start(self, modules: list[str]) -> None:
        from twisted.internet import inotify  # only when a module is watched

        path = await worker_path(self._reactor, self._reactor, self._env)
        self._notifier = inotify.INotify(self._reactor)
        self._notifier.startReading()
        mask = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM
                | inotify.IN_CREATE | inotify.IN_DELETE)
        roots = []
        for module in modules:
            source = source_of(module, path)
            if source is None:
                self.log.error("watch: {module} is not found on the workers' path: not watched",
                               module=module)
                continue
            self._watched[module] = _Watched(module)
            self._notifier.watch(FilePath(str(source.root)), mask=mask, autoAdd=source.recursive,
                                 recursive=source.recursive,
                                 callbacks=[self._changed_for(module, source)])
            roots.append(str(source.root))
            self.log.info("watch: {module}: watching {root}", module=module,
                          root=str(source.root))
        self.watching.callback(roots)

    def _not_started(self, failure: Any) -> None:
        self.log.failure("watch: not started", failure=failure)
        if not self.watching.called:
            self.watching.errback(failure)

    def _changed_for(self, module: str, source: Source) -> Callable[[object, FilePath[str], int],
                                                                    None]:
        def changed(_: object, path: FilePath[str], mask: int) -> None:
            name = path.basename()
            name = name.decode() if isinstance(name, bytes) else name
            if name.endswith(".py") and not name.startswith(".#"):
                self._note(module, os.fsdecode(path.path))

        return changed

    def _note(self, module: str, path: str) -> None:
        """A source file of ``module`` changed: check it once the burst is over."""
        watched = self._watched[module]
        watched.changed.add(path)
        if watched.debounce is not None and watched.debounce.active():
            watched.debounce.reset(self._debounce)
        else:
            watched.debounce = self._reactor.callLater(self._debounce, self._settled, watched)

    def _settled(self, watched: _Watched) -> None:
        watched.debounce = None
        if watched.checking:
            watched.again = True  # checked again once this check is done
            return
        watched.checking = True
        changed, watched.changed = sorted(watched.changed), set()
        Deferred.fromCoroutine(self._check(watched, changed)).addErrback(
            lambda failure: self.log.failure("watch: {module}: check failed", failure=failure,
                                             module=watched.module))

    async def _check(self, watched: _Watched, changed: list[str]) -> None:
        try:
            error = await check_import(self._reactor, self._reactor, watched.module, self._env,
                                       self._check_timeout)
        finally:
            watched.checking = False
        if not self.running:
            return
        watched.unrestarted.update(changed)
        if error is None:
            watched.shown = None
            changed, watched.unrestarted = sorted(watched.unrestarted), set()
            drop_bytecode(changed)  # a same-size edit within a second: not the old .pyc
            self._restart(watched.module, changed)
        elif error != watched.shown:
            watched.shown = error
            self._failed(watched.module, error)
        else:
            self.log.debug("watch: {module} still does not import (shown already)",
                           module=watched.module)
        if watched.again:
            watched.again = False
            self._settled(watched)

    def _jobs(self, module: str) -> list[str]:
        return [job.guid for job in list(self._initiator.workers.values())
                if job.module == module and job.service is None
                and job.wanted is Wanted.RUNNING]

    def _restart(self, module: str, changed: list[str]) -> None:
        files = [os.path.basename(path) for path in changed]
        for guid in self._jobs(module):
            self.log.info("watch: job {guid} restarts: {module} changed ({files})", guid=guid,
                          module=module, files=", ".join(files))
            self._initiator.worker_event(guid, EVENT_RESTART, {"module": module, "files": files})
            try:
                self._initiator.restart(guid)
            except Exception as exc:  # UnknownModule, NoFreePort, StoreFailed, SpawnFailed ...
                self.log.error("watch: job {guid} was not restarted: {error}", guid=guid,
                               error=str(exc))
        services = self._initiator.services
        for name, group in list(services.groups.items()):
            if group.spec.module != module:
                continue
            self.log.info("watch: service {service} rolls out: {module} changed ({files})",
                          service=name, module=module, files=", ".join(files))
            try:
                services.roll_out(name)
            except Exception as exc:  # ServiceConflict (a rollout runs), DaemonStopping ...
                self.log.error("watch: service {service} was not rolled out: {error}",
                               service=name, error=str(exc))

    def _failed(self, module: str, error: str) -> None:
        guids = self._jobs(module)
        self.log.error("watch: {module} does not import cleanly; nothing restarted: {error}",
                       module=module, error=error, guids=guids)
        for guid in guids:
            self._initiator.worker_event(guid, EVENT_FAILED, {"module": module, "error": error})

    def stopService(self) -> None:
        Service.stopService(self)
        for one in self._watched.values():
            if one.debounce is not None and one.debounce.active():
                one.debounce.cancel()
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
