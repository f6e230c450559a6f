"""
Readiness: how the daemon learns that a new worker answers.

A worker run by the runtime says when it listens (a line on its ready fd,
:data:`~turberfield_twisted.contract.READY_FD`); :class:`HealthProbe`
then confirms with one ``GET /health`` that answers 200 in the job's own
name. Until it hears that, it polls: at the spawn, ``first`` (0.1 s)
after, then each pause twice the last, at most ``cap`` (1 s) apart, so that a
worker that never says so (one not built on the runtime) is seen ready
within about a second too, while a hundred workers starting at once cost
the daemon a few checks each, not one every 50 ms for as long as they
take. A module whose worker once said it listens is taken to say so
again: its next workers are not polled before they say so (only every
``cap`` seconds, in case one does not), which spares the daemon the
checks a worker starting under load refuses (four or five of each
hundred's first checks). Each check is one plain ``GET`` on a connection of its own,
straight to the worker's IP address, closed after its answer
(:class:`~turberfield_twisted.worker.wire.HealthGet`: no treq, no
connection pool); the lifecycle cancels the wait when the job ends or is
asked to stop.
"""

from __future__ import annotations

import json

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from turberfield_twisted.errors import JobExited, NotReady
from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.worker.parent import HttpClient
from turberfield_twisted.worker.wire import HealthGet

__all__ = ["HealthProbe", "answer_is_from", "make_probe", "only_ready"]

def answer_is_from(guid: str, body: bytes) -> bool:
    """
    Whether a health answer may be from job ``guid``: false only if it is
    JSON naming another guid (the worker runtime names its own). Another
    initiator's worker may hold the port this one thought free.
    """
    try:
        named = json.loads(body).get("guid", guid)
    except (ValueError, AttributeError):
        return True
    return bool(named == guid)


@attrs.frozen
class HealthProbe:
    """
    Ask ``GET /health`` through ``http`` (a treq-like client) on
    ``reactor``: at once, then after ``first`` seconds, each pause
    ``growth`` times the last, at most ``cap``, and at once when the
    worker says it listens (then, if that check fails, ``first`` later
    again, and so on); each try gets ``timeout``. A worker of a module
    in ``says_listening`` (each module whose worker said so, noted as it
    did) is first checked when it says so, or ``cap`` after the spawn.
    """

    http: HttpClient | HealthGet
    reactor: IReactorTime
    first: float = 0.1
    growth: float = 2.0
    cap: float = 1.0
    timeout: float = 1.0
    says_listening: set[str] = attrs.field(factory=set, eq=False)

    def wait(self, guid: str, url: str, listening: Deferred[str | None] | None = None,
             module: str | None = None) -> Deferred[None]:
        """
        Fire once the worker at ``url`` answers 200 as ``guid``; ``listening``
        fires when the worker (of ``module``) says it listens (it is
        cancelled once the wait is over). Cancel to give up.
        """
        return Deferred.fromCoroutine(self._poll(guid, url, listening, module))

    async def _poll(self, guid: str, url: str, listening: Deferred[str | None] | None,
                    module: str | None) -> None:
        pause: Deferred[None] | None = None

        def heard(_: object) -> None:
            if module is not None:
                self.says_listening.add(module)
            if pause is not None and not pause.called:
                pause.callback(None)

        if listening is not None:
            listening.addCallbacks(heard, lambda failure: failure.trap(CancelledError))
        delay, checked_heard = self.first, False
        try:
            if listening is not None and not listening.called and module in self.says_listening:
                pause = self._sleep(self.cap)  # it will say so: no check before (or cap after)
                await pause  # then as any other: checked now, "first" later if that fails
            while True:
                if await self._answers(guid, url):
                    return
                if listening is not None and listening.called and not checked_heard:
                    checked_heard, delay = True, self.first  # it said so: soon again
                pause = self._sleep(delay)
                await pause
                if listening is not None and listening.called and not checked_heard:
                    checked_heard, delay = True, self.first  # woken by it: check now
                else:
                    delay = min(delay * self.growth, self.cap)
        finally:
            if listening is not None and not listening.called:
                listening.cancel()

    def _sleep(self, delay: float) -> Deferred[None]:
        """A Deferred that fires after ``delay`` seconds (or sooner, if fired)."""

        def wake() -> None:
            if not d.called:
                d.callback(None)

        def cancel(_: Deferred[None]) -> None:
            if call.active():
                call.cancel()

        def done(result: object) -> object:
            cancel(d)
            return result

        d: Deferred[None] = Deferred(cancel)
        call = self.reactor.callLater(delay, wake)
        d.addBoth(done)
        return d

    async def _answers(self, guid: str, url: str) -> bool:
        try:
            response = await self.http.get(url, timeout=self.timeout, reactor=self.reactor)
            body = await response.content()
        except CancelledError:
            raise  # the wait was given up
        except Exception:  # not listening yet: the probe goes on
            return False
        return bool(response.code == 200 and answer_is_from(guid, body))


def make_probe(reactor: IDaemonReactor, http: HttpClient | None = None) -> HealthProbe:
    """
    A :class:`HealthProbe` through ``http`` if given, else through a
    :class:`~turberfield_twisted.worker.wire.HealthGet` of its own (one
    connection a check, straight to the worker's IP address: the daemon
    holds no idle connection to a ready worker).
    """
    return HealthProbe(http if http is not None else HealthGet(reactor), reactor)


def only_ready(guid: str, waiting: Deferred[Job]) -> Deferred[Job]:
    """
    ``waiting`` (for job ``guid`` to be ready or to end), as a Deferred that
    fires with the job only if it is ``ready``: else it fails with
    :class:`JobExited`, or :class:`NotReady` if the wait timed out.
    """

    def check(job: Job) -> Job:
        if job.state is not JobState.READY:
            raise JobExited(guid, job.status, job.last_error)
        return job

    def explain(failure: Failure) -> Failure:
        if failure.check(CancelledError, DeferredTimeout):
            raise NotReady(f"job {guid} not ready in time")
        return failure

    return waiting.addCallbacks(check, explain)
