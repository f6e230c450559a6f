"""
Prometheus metrics of an initiator: its jobs, their transitions, how long
a launch takes to be ready, the relay's requests and their latency, its
web-hooks, and its services (instances ready, rollouts), as the text that
``GET /metrics`` serves.

Labels are the job state and module (modules are bounded by the config's
allow-list), and a service's name (services are few, each made by an
operator); a guid is never a label. What is counted is counted here, and
the text is written by :mod:`.exposition` (the daemon never loads
``prometheus_client``, nor through it the standard library's ``ssl``).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import attrs

from turberfield_twisted import __version__
from turberfield_twisted.daemon.exposition import (
    CONTENT_TYPE,
    CounterFamily,
    Family,
    GaugeFamily,
    HistogramFamily,
    InfoFamily,
    render,
)
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.jobs.table import JobTable

__all__ = ["HOOK_FIELDS", "READY_BUCKETS", "RELAY_BUCKETS", "ROLLOUT_OUTCOMES", "Histogram",
           "LogCounts", "Metrics", "ServiceCounts"]

#: Bucket bounds (seconds) of the spawn -> ready histogram.
READY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)


#: Bucket bounds (seconds) of the relay's latency histogram.
RELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


@attrs.define
class Histogram:
    """Observations counted into ``bounds`` (upper bounds, ascending), and their sum."""

    bounds: Sequence[float]
    counts: list[int] = attrs.field(init=False)
    total: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last, as Prometheus wants them."""
        out, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


#: The per-hook counts of ``HookDispatcher.list()`` summed into ``proactor_hook_<field>``.
HOOK_FIELDS = {
    "queued": "Records waiting for delivery (and being sent), over all web-hooks.",
    "delivered": "Records delivered, over all current web-hooks.",
    "dropped": "Records dropped (queue full, or refused with a 4xx), over all current web-hooks.",
    "failed_attempts": "Delivery attempts that failed, over all current web-hooks.",
}


class HookCounts(Protocol):
    """What the metrics read of the web-hooks (a ``HookDispatcher``): each one's counts."""

    def list(self) -> list[dict[str, Any]]:
        """Each subscription as JSON, with the counts in :data:`HOOK_FIELDS`."""
        ...


class ServiceCounts(Protocol):
    """What the metrics read of the services (a ``Services``): each one's instance counts."""

    def ready_counts(self) -> dict[str, tuple[int, int]]:
        """Each service's (ready instances, instances asked for), by name."""
        ...


class LogCounts(Protocol):
    """What the metrics read of logs on disk (a ``JobLogs``): lines written and dropped."""

    written: int
    dropped: Counter[str]


#: The rollout outcomes counted, by the service event that says so.
ROLLOUT_OUTCOMES = {"done": "rollout_done", "failed": "rollout_failed"}


class Metrics:
    """
    The metrics of ``initiator``'s job table (and of ``hooks``, a
    ``HookDispatcher``, if given). Job counts, restarts and hook counts are
    read at scrape time; transitions and worker events are counted from
    ``initiator.subscribe`` until :meth:`close`.
    """

    def __init__(self, initiator: JobTable, hooks: HookCounts | None = None,
                 services: ServiceCounts | None = None, logs: LogCounts | None = None):
        self.initiator = initiator
        self.logs = logs
        self.hooks = hooks
        self.services = services
        self.transitions: Counter[tuple[str, JobState]] = Counter()
        self.worker_events: Counter[str] = Counter()
        #: What happened to services (service, event): rollouts, by how they ended.
        self.service_events: Counter[tuple[str, str]] = Counter()
        #: Spawn -> ready, by module; when each starting job was spawned.
        self.ready_seconds: dict[str, Histogram] = {}
        self._spawned: dict[str, float] = {}
        #: Relayed requests, by status class ("2xx" ..., or "closed": the caller went
        #: away before the answer ended), and their latency.
        self.relay_requests: Counter[str] = Counter()
        self.relay_seconds = Histogram(RELAY_BUCKETS)
        self._modules: set[str] = set()
        self._unsubscribe = initiator.subscribe(self._observe)

    def close(self) -> None:
        """Stop counting the initiator's events (what was counted stays)."""
        self._unsubscribe()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text of every metric, and its content type."""
        return render(self.families()), CONTENT_TYPE

    def relayed(self, seconds: float, status: int | str) -> None:
        """
        The relay answered a request with ``status`` after ``seconds``
        (``status`` a class of its own, such as ``closed``, if it is not a number).
        """
        self.relay_requests[status if isinstance(status, str) else f"{status // 100}xx"] += 1
        self.relay_seconds.observe(seconds)

    def _observe(self, event: JobEvent) -> None:
        if event.kind is EventKind.SERVICE:
            self.service_events[(event.guid, event.name)] += 1
            return
        self._modules.add(event.module)
        if event.kind is not EventKind.STATE or event.state is None:
            self.worker_events[event.module] += 1
            return
        self.transitions[(event.module, event.state)] += 1
        if event.state is JobState.STARTING:
            self._spawned[event.guid] = event.time
            return
        spawned = self._spawned.pop(event.guid, None)
        if spawned is not None and event.state is JobState.READY:
            histogram = self.ready_seconds.setdefault(event.module, Histogram(READY_BUCKETS))
            histogram.observe(event.time - spawned)

    def families(self) -> Iterator[Family]:
        """Every family, read now (:meth:`render` calls this on each scrape)."""
        workers = list(self.initiator.workers.values())
        modules = sorted(self._modules | {job.module for job in workers})

        info = InfoFamily("proactor", "The proactor package.")
        info.add([], {"version": __version__})
        yield info

        by_state = Counter((job.module, job.state) for job in workers)
        jobs = GaugeFamily("proactor_jobs", "Jobs in the job table, by module and state.",
                     labels=["module", "state"])
        restarts = GaugeFamily(
            "proactor_job_restarts",
            "Restarts after an unasked exit, summed over the jobs in the job table.",
            labels=["module"])
        restart_sums: Counter[str] = Counter()
        for job in workers:
            restart_sums[job.module] += job.restarts
        for module in modules:
            for state in JobState:
                jobs.add([module, state.value], by_state[(module, state)])
            restarts.add([module], restart_sums[module])
        yield jobs
        yield restarts

        transitions = CounterFamily(
            "proactor_job_transitions", "Jobs entering a state, by module and state.",
            labels=["module", "state"])
        events = CounterFamily(
            "proactor_worker_events", "Events posted by workers, by module.",
            labels=["module"])
        for module in modules:
            for state in JobState:
                transitions.add([module, state.value], self.transitions[(module, state)])
            events.add([module], self.worker_events[module])
        yield transitions
        yield events
        yield from self._latency_families()

        if self.hooks is not None:
            yield from self._hook_families(self.hooks)
        if self.services is not None:
            yield from self._service_families(self.services)
        if self.logs is not None:
            for name, text, value in (
                    ("written", "Lines of job output written to the log files.",
                     self.logs.written),
                    ("dropped", "Lines of job output dropped, not written to the log files"
                                " (the disk full, or the writer behind).",
                     sum(self.logs.dropped.values()))):
                lines = CounterFamily(f"proactor_log_lines_{name}", text)
                lines.add([], value)
                yield lines

    def _service_families(self, services: ServiceCounts) -> Iterator[Family]:
        counts = services.ready_counts()
        names = sorted(set(counts) | {name for name, _ in self.service_events})
        ready = GaugeFamily("proactor_service_instances_ready",
                      "Instances ready, by service.", labels=["service"])
        wanted = GaugeFamily("proactor_service_instances",
                       "Instances each service is asked to run.", labels=["service"])
        for name, (up, asked) in sorted(counts.items()):
            ready.add([name], up)
            wanted.add([name], asked)
        yield ready
        yield wanted
        rollouts = CounterFamily("proactor_service_rollouts",
                           "Rollouts that ended, by service and outcome.",
                           labels=["service", "outcome"])
        for name in names:
            for outcome, event in ROLLOUT_OUTCOMES.items():
                rollouts.add([name, outcome], self.service_events[(name, event)])
        yield rollouts

    def _latency_families(self) -> Iterator[Family]:
        ready = HistogramFamily(
            "proactor_job_ready_seconds",
            "Seconds from a worker's spawn to its being ready, by module.", labels=["module"])
        for module, histogram in sorted(self.ready_seconds.items()):
            ready.add([module], histogram.buckets(), histogram.total)
        yield ready
        requests = CounterFamily(
            "proactor_relay_requests",
            "Requests relayed to workers, by status class (closed: the caller went away).",
            labels=["code"])
        for code in ("2xx", "3xx", "4xx", "5xx", "closed"):
            requests.add([code], self.relay_requests[code])
        yield requests
        latency = HistogramFamily(
            "proactor_relay_seconds", "Seconds from a relayed request to the worker's answer.")
        latency.add([], self.relay_seconds.buckets(), self.relay_seconds.total)
        yield latency

    @staticmethod
    def _hook_families(counts: HookCounts) -> Iterator[Family]:
        hooks = counts.list()
        count = GaugeFamily("proactor_hooks", "Web-hook subscriptions.")
        count.add([], len(hooks))
        yield count
        for field, text in HOOK_FIELDS.items():
            family = GaugeFamily(f"proactor_hook_{field}", text)
            family.add([], sum(int(hook.get(field) or 0) for hook in hooks))
            yield family
