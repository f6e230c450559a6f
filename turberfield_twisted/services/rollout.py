"""
A rolling replacement of a service's instances: :class:`Rollout`.

Every instance the service had when it began ("old") is replaced by one
of the target spec ("new"), a step at a time, each step taken on a job
event of one of them:

- an old instance is drained (oldest first) only if the ready instances
  left, old and new, stay at least ``instances - max_unavailable``;
- a new instance is started while fewer than ``instances`` new ones were,
  and the old that are not draining and the new that run are fewer than
  ``instances + surge``;
- it is done once every old instance has ended and ``instances`` new ones
  are ready.

A new instance that fails (it exits, backs off after a crash, or is not
ready within ``ready_timeout``: the lifecycle kills it then) rolls the
rollout back by itself: each new instance not ready is stopped, the old
ones not yet drained go on serving, and the rollout is ``failed`` with
the instance's error (its last stderr lines: an import error, say). New
instances already ready stay, in place of the old ones drained for them,
so the service never has fewer than ``instances - max_unavailable``
ready. A warm module's template is renewed first, so that the new
instances run the module's code as it is now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.logger import Logger

from turberfield_twisted.errors import NoFreePort, SpawnFailed, StoreFailed
from turberfield_twisted.jobs.job import ENDED, EventKind, JobEvent, JobState
from turberfield_twisted.services.interfaces import IInstanceHost
from turberfield_twisted.services.model import (
    RolloutState,
    RolloutView,
    ServiceEvent,
    ServiceSpec,
)

if TYPE_CHECKING:
    from turberfield_twisted.services.group import ServiceGroup

__all__ = ["Rollout"]

#: States in which a new instance has failed its rollout.
_FAILING = frozenset({JobState.BACKOFF, JobState.FAILED, JobState.EXITED})


class Rollout:
    """
    The rollout of ``group`` to ``target`` (see the module), its instances
    in ``host``'s table; ``ended(rollout)`` is called once it is done or
    failed.
    """

    log = Logger()

    def __init__(self, group: ServiceGroup, target: ServiceSpec, host: IInstanceHost,
                 ended: Callable[[Rollout], None], replace: list[str] | None = None):
        self.group = group
        self.target = target
        self._host = host
        self._ended = ended
        #: The instances it replaces, oldest first (``replace``: only those, one new
        #: instance for each, as recycling does), and those it started.
        self.old: list[str] = list(group.members if replace is None else replace)
        #: How many new instances it starts.
        self.count = target.instances if replace is None else len(self.old)
        self.new: list[str] = []
        self.draining: set[str] = set()
        self.state = RolloutState.RUNNING
        self.reason: str | None = None
        self.started = host.seconds()
        self.finished: float | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._stepping = False
        self._again = False

    @property
    def succeeded(self) -> bool:
        """Whether it is done, every old instance replaced."""
        return self.state is RolloutState.DONE

    def view(self) -> RolloutView:
        """Where it is."""
        replaced = sum(1 for guid in self.new if self.group.state_of(guid) is JobState.READY)
        return RolloutView(self.state, self.started, self.count,
                           self.count if self.succeeded else replaced,
                           self.finished, self.reason)

    def start(self) -> None:
        """Begin: the module's code renewed (a warm template), then the first step."""
        self.log.info("service {service}: rollout of {count} instances to {module} begins",
                      service=self.group.name, count=self.count,
                      module=self.target.module)
        self.group.announce(ServiceEvent.ROLLOUT_STARTED,
                            {"total": self.count, "module": self.target.module})
        self._unsubscribe = self._host.subscribe(self._heard)
        self._host.renew(self.target.module).addBoth(lambda _: self.step())

    def _heard(self, event: JobEvent) -> None:
        if event.kind is EventKind.STATE and (event.guid in self.new or event.guid in self.old):
            self.step()

    def step(self) -> None:
        """Take every step the instances' states allow now (once at a time)."""
        if self.state is not RolloutState.RUNNING:
            return
        if self._stepping:
            self._again = True  # an event of a step's own start or stop: go round again
            return
        self._stepping = True
        try:
            self._again = True
            while self._again and self.state is RolloutState.RUNNING:
                self._again = False
                self._step()
        finally:
            self._stepping = False

    def _step(self) -> None:
        count, surge = self.count, self.target.surge
        floor = count - self.target.max_unavailable
        state = self.group.state_of
        for guid in self.new:
            if state(guid) in _FAILING or state(guid) is None:
                self._fail(guid)
                return
        live_old = [guid for guid in self.old if guid not in self.draining]
        ready = sum(1 for guid in [*live_old, *self.new] if state(guid) is JobState.READY)
        for guid in live_old:
            loses = 1 if state(guid) is JobState.READY else 0
            if ready - loses < floor:
                break  # oldest first: the rest wait for new ones to be ready
            self.draining.add(guid)
            self.group.stop_instance(guid)
            ready -= loses
        running = len([guid for guid in self.old if guid not in self.draining]) + len(
            [guid for guid in self.new if state(guid) not in ENDED])
        while len(self.new) < count and running < count + surge:
            try:
                guid = self.group.start_instance(self.target)
            except (NoFreePort, SpawnFailed, StoreFailed) as exc:
                self._fail(None, str(exc))
                return
            self.new.append(guid)
            running += 1
        if (len(self.new) == count and all(state(guid) is JobState.READY for guid in self.new)
                and all(state(guid) in (*ENDED, None) for guid in self.old)):
            self._finish(RolloutState.DONE)

    def _fail(self, guid: str | None, reason: str | None = None) -> None:
        """Roll back: each new instance not ready is stopped; the rollout has ``failed``."""
        if guid is not None:
            job_state = self.group.state_of(guid)
            error = None
            if job_state is not None:
                error = self._host.job(guid).last_error
            reason = (f"instance {guid} {job_state.value if job_state else 'is gone'}"
                      f"{': ' + error if error else ''}")
        self.reason = reason or "a new instance failed"
        for new in self.new:
            if self.group.state_of(new) is not JobState.READY and new in self.group.members:
                self.group.stop_instance(new)
        self._finish(RolloutState.FAILED)

    def abandon(self, reason: str) -> None:
        """Stop here, changing no instance (the service is removed, or the daemon stops)."""
        if self.state is RolloutState.RUNNING:
            self.reason = reason
            self._finish(RolloutState.FAILED)

    def _finish(self, state: RolloutState) -> None:
        self.state = state
        self.finished = self._host.seconds()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        seconds = round(self.finished - self.started, 3)
        if state is RolloutState.DONE:
            self.log.info("service {service}: rollout done in {seconds}s", service=self.group.name,
                          seconds=seconds)
            self.group.announce(ServiceEvent.ROLLOUT_DONE,
                                {"total": self.count, "seconds": seconds})
        else:
            self.log.error("service {service}: rollout failed, rolled back: {reason}",
                           service=self.group.name, reason=self.reason)
            self.group.announce(ServiceEvent.ROLLOUT_FAILED,
                                {"reason": self.reason, "replaced": self.view().replaced,
                                 "seconds": seconds})
        self._ended(self)
