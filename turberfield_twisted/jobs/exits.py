"""
How a job's process ends, and what follows: the ready timeout's SIGKILL,
SIGTERM then SIGKILL after a wait, its exit taken (the next port after
exit 75, a restart after its backoff, or its end) and the named timers of a
job that these run on. :class:`~.lifecycle.Lifecycle` is an :class:`Exits`;
its transitions stay declared in :mod:`turberfield_twisted.jobs.transitions`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from turberfield_twisted.config.settings import Settings
from turberfield_twisted.contract import EXIT_PORT_IN_USE
from turberfield_twisted.jobs.job import Job
from turberfield_twisted.jobs.transitions import _P, _S, Input
from turberfield_twisted.launch.interfaces import IWorkerProcess
from turberfield_twisted.launch.protocol import ExitStatus

__all__ = ["MAX_PORT_RETRIES", "Exits"]

#: How many times a starting job moves on to the next port after exit 75.
MAX_PORT_RETRIES = 10


class Exits:
    """
    The part of :class:`~.lifecycle.Lifecycle` that ends a job's process and
    takes its exit: it uses the lifecycle's reactor, settings, log and
    :meth:`~.lifecycle.Lifecycle.fire`, and holds no state of its own (each
    timer is kept in its job's ``calls``).
    """

    __slots__ = ()

    if TYPE_CHECKING:  # what Lifecycle provides
        log: Logger
        _reactor: IReactorTime
        _settings: Callable[[], Settings]

        def fire(self, job: Job, event: Input) -> bool: ...

        def _queue(self, job: Job, event: Input) -> None: ...

        def _start_again(self, job: Job) -> None: ...

    def _ready_timed_out(self, job: Job, process: IWorkerProcess) -> None:
        job.calls.pop("ready_timeout", None)
        if job.process is process and job.state is _S:
            job.timed_out = True
            self.log.warn("job {guid} not ready within {timeout}s: SIGKILL", guid=job.guid,
                          timeout=self._settings().initiator.ready_timeout)
            process.signal(signal.SIGKILL)

    def _terminate(self, job: Job, process: IWorkerProcess, wait: float) -> None:
        """SIGTERM to ``job``'s group, SIGKILL after ``wait`` seconds (in place of any due)."""
        self._later(job, "kill", wait, self._kill, job, process)
        process.signal(signal.SIGTERM)

    def _kill(self, job: Job, process: IWorkerProcess) -> None:
        job.calls.pop("kill", None)
        if job.process is process:
            self.log.warn("job {guid} did not stop in time: SIGKILL", guid=job.guid)
            process.signal(signal.SIGKILL)

    def _exited(self, status: ExitStatus, job: Job, process: IWorkerProcess) -> None:
        if job.process is not process:
            return
        process.signal(signal.SIGKILL)  # whatever is left of its process group
        self.cancel_all(job)
        job.process = None
        job.status = status
        self.log.info("job {guid} ended: {status}", guid=job.guid, status=status.describe())
        if job.state is _P:
            self.fire(job, Input.EXIT)
        elif (status.code == EXIT_PORT_IN_USE and job.state is _S
              and len(job.busy_ports) < MAX_PORT_RETRIES):
            self._next_port(job)
        else:
            self._unasked(job, status)

    def _next_port(self, job: Job) -> None:
        """A starting job could not bind its port: start it again on the next one."""
        job.busy_ports.add(job.port)
        job.last_error = f"port {job.port} in use"
        self.log.warn("job {guid} could not bind port {port}: trying the next",
                      guid=job.guid, port=job.port)
        self._queue(job, Input.PORT_TAKEN)

    def _unasked(self, job: Job, status: ExitStatus) -> None:
        """An exit nobody asked for: back off and start again, or give up."""
        failed = (status.code != 0 or status.lost is not None or job.state is _S
                  or job.limit_hit is not None)
        if failed:
            job.last_error = job.failure(status, self._settings().initiator.ready_timeout)
        tracker = job.tracker
        now = self._reactor.seconds()
        delay = tracker.next_restart(now, failed) if tracker is not None else None
        if delay is not None:
            self.log.info("job {guid} restarts in {delay:.2f}s", guid=job.guid, delay=delay)
            self.fire(job, Input.CRASH)
            self._later(job, "restart", delay, self._restart_due, job)
            return
        if tracker is not None and tracker.gave_up:
            policy = tracker.policy
            job.last_error = (f"gave up after {policy.max_restarts} restarts within"
                              f" {policy.restart_window:g}s; last: "
                              f"{job.last_error if failed else status.describe()}")
        failed = failed or (tracker is not None and tracker.gave_up)
        self.fire(job, Input.GIVE_UP if failed else Input.FINISH)

    def _restart_due(self, job: Job) -> None:
        job.calls.pop("restart", None)
        job.restarts += 1
        self._start_again(job)

    # -- timers ------------------------------------------------------------

    def _later(self, job: Job, name: str, delay: float, fn: Callable[..., None],
               *args: object) -> None:
        """Call ``fn(*args)`` in ``delay`` seconds as ``job``'s timer ``name``, cancelling
        any timer already under that name (``fn`` pops its own entry when it runs)."""
        self._cancel(job, name)
        job.calls[name] = self._reactor.callLater(delay, fn, *args)

    def _cancel(self, job: Job, name: str) -> None:
        call = job.calls.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _cancel_probe(self, job: Job) -> None:
        probe, job.readiness = job.readiness, None
        if probe is not None:
            probe.cancel()

    def cancel_all(self, job: Job) -> None:
        """Cancel every timer and check of ``job`` (its process has ended)."""
        for name in list(job.calls):
            self._cancel(job, name)
        self._cancel_probe(job)
