"""
Liveness on a Clock: when checks begin and end, how they are spread, how
failures count, the bound a stuck job is restarted within, and the
operations keys as the config gives them. No processes, no sleeps: a
fake treq-like client answers as each test says.
"""

from __future__ import annotations

import configparser
import signal
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from turberfield_twisted.config.operations import Operations, operations_for
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.errors import ConfigError
from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, JobState
from turberfield_twisted.jobs.liveness import LIVENESS_EVENT, CheckBy, Liveness
from turberfield_twisted.jobs.liveprobe import TreqProbe
from turberfield_twisted.launch.interfaces import IWatchdog
from turberfield_twisted.testing.fakes import FakeWorker

OPS = Operations(live_interval=1.0, live_timeout=0.5, live_failures=3)


@attrs.define
class _Response:
    code: int
    body: bytes = b'{"status": "ok"}'

    def content(self) -> Deferred[bytes]:
        return succeed(self.body)


@attrs.define
class FakeHttp:
    """Answers ``code`` at once, or never (``code`` None): what a stuck worker does."""

    code: int | None = 200
    asked: list[tuple[str, float]] = attrs.field(factory=list)
    clock: Clock | None = None
    body: bytes = b'{"status": "ok"}'

    def get(self, url: str, **kwargs: Any) -> Deferred[_Response]:
        self.asked.append((url, self.clock.seconds() if self.clock else 0.0))
        if self.code is None:
            return Deferred()
        return succeed(_Response(self.code, self.body))


@implementer(IWatchdog)
@attrs.define(eq=False)
class PingingWorker(FakeWorker):
    pings: int = 0


def worker(guid: str = "g") -> FakeWorker:
    return FakeWorker("m", guid, 28000, b"", lambda stream, text: None)


@attrs.define
class Rig:
    clock: Clock
    http: FakeHttp
    liveness: Liveness
    jobs: dict[str, Job]
    over: list[tuple[str, str]]
    emitted: list[JobEvent]

    def ready(self, guid: str = "g", process: Any = None) -> Job:
        job = Job(guid=guid, port=28000, session=None, module="m",
                  process=process or worker(guid), state=JobState.READY)
        self.jobs[guid] = job
        self.liveness.observe(job.event(self.clock.seconds()))
        return job


def rig(ops: Operations = OPS, code: int | None = 200, phase: float = 0.0,
        phases: list[float] | None = None) -> Rig:
    """Liveness on a clock; each job's phase drawn from ``phases`` in turn, else ``phase``."""
    clock = Clock()
    draws = iter(phases or [])
    http = FakeHttp(code, clock=clock)
    jobs: dict[str, Job] = {}
    over: list[tuple[str, str]] = []
    emitted: list[JobEvent] = []
    liveness = Liveness(clock, TreqProbe(http, clock), jobs.get, lambda job: ops,
                        lambda job, why: over.append((job.guid, why)), emitted.append,
                        random=lambda: next(draws, phase))
    return Rig(clock, http, liveness, jobs, over, emitted)


def test_a_stuck_job_is_restarted_within_the_bound_of_its_last_good_check():
    """
    Checks that never answer fail at live_timeout each; the live_failures-th restarts the
    job (over, then SIGKILL) live_interval * live_failures + live_timeout after the last
    check it passed began.
    """
    r = rig()
    job = r.ready()
    r.clock.advance(0)  # the first check, at phase 0, passes
    assert r.liveness.checking("g") and len(r.http.asked) == 1
    r.http.code = None  # stuck from now on
    bound = OPS.live_bound
    r.clock.pump([1, 1, 1, 0.49])  # checks at 1, 2 and 3 s, each given 0.5 s
    assert r.over == []
    r.clock.advance(0.01)
    assert r.over and r.over[0][0] == "g"
    assert r.emitted[0].time <= bound + 1e-9
    failed = r.liveness.failure("g")
    assert failed is not None and failed.by is CheckBy.HTTP and failed.failures == 3
    assert r.over[0][1] == str(failed) and "no answer within 0.5s" in str(failed)
    assert failed.failing_for == pytest.approx(2.5)  # first failed check at 1 s, over at 3.5
    assert job.process.signals == [signal.SIGKILL]
    assert [e.name for e in r.emitted] == [LIVENESS_EVENT]
    assert r.emitted[0].data["failures"] == 3 and not r.liveness.checking("g")


def test_a_good_answer_resets_the_count_of_failures():
    """Failures count only in a row: one good answer between them and none restarts the job."""
    r = rig(code=500)
    r.ready()
    r.clock.advance(0)  # asked at its phase, 0: answered 500
    for code in (500, 200, 500, 500, 500):  # what the next check is answered
        r.http.code = code
        r.clock.advance(0.5)  # the last check asked is judged
        assert r.over == []
        r.clock.advance(0.5)  # the next is asked
    r.clock.advance(0.5)  # the third 500 in a row since the 200
    assert r.over and "answered 500" in r.over[0][1]


def test_an_answer_from_another_job_is_a_failure():
    """A health answer naming another guid (another daemon's worker on the port) fails."""
    r = rig()
    r.http.body = b'{"guid": "other"}'
    r.ready()
    r.clock.pump([0] + [0.5] * 6)  # asked at 0, 1 and 2, judged half a second later
    assert r.over and "another job" in r.over[0][1]


def test_an_answer_is_judged_at_the_judge_moment_not_as_it_comes():
    """
    A check's answer counts live_timeout after it was asked, however soon it came: the
    judge moment is its timeout, and nothing is told of it before.
    """
    r = rig()
    r.ready()
    d = r.liveness.passed("g", 1)
    r.clock.advance(0)
    assert len(r.http.asked) == 1 and not d.called  # answered at once, not yet judged
    r.clock.advance(OPS.live_timeout - 0.01)
    assert not d.called
    r.clock.advance(0.01)
    assert d.called


def test_jobs_of_a_phase_share_its_one_timer_and_a_check_adds_none():
    """
    A phase's checks run on one timer, armed again for each moment (ask, judge): jobs that
    drew it share it, a job of another phase has its own, and no check adds a timer.
    """
    r = rig(phases=[0.05, 0.05, 0.05, 0.55])
    for guid in "abcd":
        r.ready(guid)
    for _ in range(8):
        assert len(r.clock.getDelayedCalls()) == 2
        r.clock.advance(0.25)
    assert len(r.http.asked) == 3 + 1 + 3 + 1 + 3  # a, b and c at 0, 1 and 2; d at 0.5, 1.5
    assert all(r.liveness.checking(g) for g in "abcd") and r.over == []
    for guid in "abc":
        r.liveness.end(guid)
    assert len(r.clock.getDelayedCalls()) == 1


def test_checks_begin_at_a_phase_of_each_job_and_end_as_it_leaves_ready():
    """
    Each job's first check waits a phase, one of PHASES of the interval (0.55 draws the
    sixth: 0.5 s); leaving ready ends them.
    """
    r = rig(phase=0.55)
    job = r.ready()
    r.clock.advance(0.49)
    assert r.http.asked == []
    r.clock.advance(0.01)
    assert [t for _, t in r.http.asked] == [0.5]
    job.state = JobState.STOPPING
    r.liveness.observe(job.event(r.clock.seconds()))
    assert not r.liveness.checking("g")
    r.clock.advance(10)
    assert len(r.http.asked) == 1 and r.clock.getDelayedCalls() == []


def test_jobs_without_live_interval_are_not_checked():
    """No live_interval, no checks and no timer."""
    r = rig(Operations())
    r.ready()
    assert not r.liveness.checking("g") and r.clock.getDelayedCalls() == []


def test_watchdog_checks_count_pings_between_checks():
    """With live_watchdog, a check passes if a ping came since the last; three without, restart."""
    process = PingingWorker("m", "g", 28000, b"", lambda stream, text: None)
    r = rig(attrs.evolve(OPS, live_watchdog=True))
    r.ready(process=process)
    for _ in range(5):
        process.pings += 2
        r.clock.advance(1)
    assert r.over == [] and r.http.asked == []
    for _ in range(3):
        r.clock.advance(1)
    failed = r.liveness.failure("g")
    assert failed is not None and failed.by is CheckBy.WATCHDOG
    assert "no WATCHDOG=1 ping" in r.over[0][1]


def test_passed_fires_once_that_many_checks_passed():
    """``passed(guid, n)`` fires after the n-th check passed, not before."""
    r = rig()
    r.ready()
    d = r.liveness.passed("g", 3)
    r.clock.pump([0, 0.5, 0.5, 0.5, 0.5])  # asked at 0, 1 and 2; judged at 0.5 and 1.5
    assert not d.called
    r.clock.advance(0.5)
    assert d.called


def _cfg(text: str) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read_string("[init]\n" + text)
    return cfg


def test_operations_are_read_from_a_module_and_a_service_section():
    """A module's keys apply to its jobs; a [service:NAME] section's own win for its instances."""
    cfg = _cfg("[m]\nlive_interval = 2\nlive_failures = 4\nmax_age = 60\n"
               "[service:web]\nmodule = m\nlisten = 8000\nlive_interval = 5\n"
               "max_requests = 100\n")
    settings = check_config(cfg, "init")
    assert operations_for(settings, "m") == Operations(live_interval=2, live_failures=4,
                                                       max_age=60)
    assert operations_for(settings, "m", "web") == Operations(
        live_interval=5, live_failures=4, max_age=60, max_requests=100)
    assert not settings.warnings


@pytest.mark.parametrize(("keys", "key"), [
    ("live_interval = 0", "live_interval"),
    ("live_failures = 0", "live_failures"),
    ("live_path = health", "live_path"),
    ("live_interval = 1\nlive_timeout = 1", "live_timeout"),
    ("max_age_jitter = 2", "max_age_jitter"),
    ("max_requests = -1", "max_requests"),
])
def test_a_bad_operations_key_is_refused_naming_it(keys, key):
    """Each bad value is a ConfigError naming its key (and never quoting the value)."""
    with pytest.raises(ConfigError, match=f"'{key}'"):
        check_config(_cfg(f"[m]\n{keys}\n"), "init")


def test_a_typo_of_an_operations_key_is_warned_of():
    """``live_intervall`` is close to a key the daemon reads: a warning says so."""
    settings = check_config(_cfg("[m]\nlive_intervall = 2\n"), "init")
    assert any("live_interval" in w for w in settings.warnings)


def test_events_name_the_liveness_failure():
    """The event's data is the typed reason's JSON: what a cluster launcher acts on."""
    r = rig(code=None)
    r.ready()
    r.clock.pump([0.1] * 40)
    (event,) = r.emitted
    assert event.kind is EventKind.WORKER and event.data["reason"] == "liveness"
    assert event.data["by"] == "http" and event.data["last"].startswith("no answer")


def test_jobs_that_draw_the_same_phase_are_checked_together():
    """Phases are points of the clock's grid of the interval: jobs ready apart share them."""
    r = rig(phase=0.35)  # the fourth of 10 phases: 0.3 s past each whole second
    r.clock.advance(10.05)
    r.ready("a")
    r.clock.advance(0.25)  # a's first check, at 10.3
    r.clock.advance(0.25)
    r.ready("b")
    r.clock.pump([0.75, 1, 1])  # 11.3, 12.3, 13.3: a's and b's
    assert [round(t, 6) for _, t in r.http.asked] == [10.3, 11.3, 11.3, 12.3, 12.3, 13.3, 13.3]
