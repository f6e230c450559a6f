"""
Prometheus metrics of an initiator: its jobs, their transitions and its
web-hooks, as the text that ``GET /metrics`` serves.

Each :class:`Metrics` owns its own ``CollectorRegistry``: nothing goes to
``prometheus_client``'s global registry. Labels are the job state and
module only (modules are bounded by the config's allow-list); a guid is
never a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from twisted.logger import Logger

from . import __version__
from .job import EventKind, JobEvent, JobState

__all__ = ["HOOK_FIELDS", "Metrics"]

#: The per-hook counts of ``HookDispatcher.list()`` summed into ``proactor_hook_<field>``.
HOOK_FIELDS = {
    "queued": "Records waiting for delivery (and being sent), over all web-hooks.",
    "delivered": "Records delivered, over all current web-hooks.",
    "dropped": "Records dropped (queue full, or refused with a 4xx), over all current web-hooks.",
    "failed_attempts": "Delivery attempts that failed, over all current web-hooks.",
}


class Metrics:
    """
    The metrics of ``initiator`` (and of ``hooks``, a ``HookDispatcher``, if
    given). Job counts, restarts and hook counts are read at scrape time;
    transitions and worker events are counted from ``initiator.subscribe``
    until :meth:`close`. It is its registry's one collector.
    """

    log = Logger()

    def __init__(self, initiator: Any, hooks: Any = None):
        self.initiator = initiator
        self.hooks = hooks
        self.version = __version__
        self.transitions: Counter[tuple[str, JobState]] = Counter()
        self.worker_events: Counter[str] = Counter()
        self._modules: set[str] = set()
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self._unsubscribe = initiator.subscribe(self._observe)

    def close(self) -> None:
        """Stop counting the initiator's events (what was counted stays)."""
        self._unsubscribe()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _observe(self, event: JobEvent) -> None:
        self._modules.add(event.module)
        if event.kind is EventKind.STATE:
            self.transitions[(event.module, event.state)] += 1
        else:
            self.worker_events[event.module] += 1

    def collect(self) -> Iterator[Metric]:
        """Every family, read now (``CollectorRegistry`` calls this on each scrape)."""
        workers = list(self.initiator.workers.values())
        modules = sorted(self._modules | {job.module for job in workers})

        info = InfoMetricFamily("proactor", "The proactor package.")
        info.add_metric([], {"version": self.version})
        yield info

        by_state = Counter((job.module, job.state) for job in workers)
        jobs = GaugeMetricFamily("proactor_jobs", "Jobs in the job table, by module and state.",
                                 labels=["module", "state"])
        restarts = GaugeMetricFamily(
            "proactor_job_restarts",
            "Restarts after an unasked exit, summed over the jobs in the job table.",
            labels=["module"])
        restart_sums: Counter[str] = Counter()
        for job in workers:
            restart_sums[job.module] += job.restarts
        for module in modules:
            for state in JobState:
                jobs.add_metric([module, state.value], by_state[(module, state)])
            restarts.add_metric([module], restart_sums[module])
        yield jobs
        yield restarts

        transitions = CounterMetricFamily(
            "proactor_job_transitions", "Jobs entering a state, by module and state.",
            labels=["module", "state"])
        events = CounterMetricFamily(
            "proactor_worker_events", "Events posted by workers, by module.",
            labels=["module"])
        for module in modules:
            for state in JobState:
                transitions.add_metric([module, state.value], self.transitions[(module, state)])
            events.add_metric([module], self.worker_events[module])
        yield transitions
        yield events

        if self.hooks is not None:
            yield from self._hook_families()

    def _hook_families(self) -> Iterator[Metric]:
        hooks = self.hooks.list()
        count = GaugeMetricFamily("proactor_hooks", "Web-hook subscriptions.")
        count.add_metric([], len(hooks))
        yield count
        for field, text in HOOK_FIELDS.items():
            family = GaugeMetricFamily(f"proactor_hook_{field}", text)
            family.add_metric([], sum(int(hook.get(field) or 0) for hook in hooks))
            yield family
