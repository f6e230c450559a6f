"""``GET /metrics``: the Prometheus text of an initiator's jobs and web-hooks."""

from __future__ import annotations

import json
from typing import Any

import attrs
import prometheus_client
import pytest_twisted
import treq
from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred, succeed

from turberfield_twisted import Initiator, LocalLauncher, __version__
from turberfield_twisted.daemon.metrics import Metrics
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.jobs.job import JobState
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor

STATES = [state.value for state in JobState]

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"
BASE = "http://127.0.0.1"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class _ReadyWorker:
    """Answers health at once: jobs become ``ready`` as soon as they start."""

    app = Klein()

    @app.route("/health")
    def health(self, request: Any) -> bytes:
        return b"{}"


@attrs.define
class Scraper:
    """An API with metrics on a fake process reactor, and its client."""

    reactor: FakeProcessReactor
    init: Initiator
    api: ControlAPI
    stub: StubTreq

    async def get(self, path: str = "/metrics", token: str | None = TOKEN) -> tuple[Any, bytes]:
        """One GET: the response and its body, checked to hold no token."""
        headers = {} if token is None else {b"Authorization": [b"Bearer " + token.encode()]}
        response = await self.stub.get(BASE + path, headers=headers, timeout=5,
                                       reactor=self.reactor)
        body: bytes = await response.content()
        assert TOKEN.encode() not in body
        for job in self.init.workers.values():
            assert job.token.encode() not in body
        return response, body

    async def scrape(self) -> Samples:
        """``GET /metrics``: 200, the Prometheus content type, and its samples."""
        response, body = await self.get()
        assert response.code == 200, body
        assert response.headers.getRawHeaders(b"content-type") == [CONTENT_TYPE_LATEST.encode()]
        return parse(body)


def parse(body: bytes) -> Samples:
    """Every sample of a Prometheus text body, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def make(hooks: Any = None, metrics: bool = True) -> Scraper:
    reactor = FakeProcessReactor()
    launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    init = Initiator(None, guid="init", cfg=initiator_config(23000, 23009), reactor=reactor,
                     launcher=launcher, http=StubTreq(_ReadyWorker().app.resource()))
    api = ControlAPI(init, TOKEN, reactor, hooks=hooks,
                     metrics=Metrics(init, hooks) if metrics else None,
                     relay_agent=RequestTraversalAgent(_ReadyWorker().app.resource()))
    return Scraper(reactor, init, api, StubTreq(api.app.resource()))


def is_error(response: Any, body: bytes, status: int) -> None:
    assert response.code == status, body
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert isinstance(json.loads(body).get("error"), str)


# -- jobs ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_jobs_by_module_and_state_and_their_transitions():
    """Two jobs ready, one stopped: every state listed (0 when none), transitions counted."""
    t = make()
    first = await t.init.launch(DEMO)
    second = await t.init.launch(DEMO)
    assert t.init.job(first).state == t.init.job(second).state == "ready"
    t.init.stop(first)
    t.reactor.spawned[0].exit(0)
    samples = await t.scrape()
    jobs = {state: value(samples, "proactor_jobs", module=DEMO, state=state) for state in STATES}
    assert jobs == {"waiting": 0, "starting": 0, "ready": 1, "stopping": 0, "exited": 1,
                    "backoff": 0, "failed": 0}
    moves = {state: value(samples, "proactor_job_transitions_total", module=DEMO, state=state)
             for state in STATES}
    assert moves == {"waiting": 2, "starting": 2, "ready": 2, "stopping": 1, "exited": 1,
                     "backoff": 0, "failed": 0}
    assert value(samples, "proactor_job_restarts", module=DEMO) == 0
    assert value(samples, "proactor_info", version=__version__) == 1
    _, body = await t.get()
    assert first.encode() not in body and second.encode() not in body  # no guid label


@pytest_twisted.ensureDeferred
async def test_restarts_and_worker_events_are_counted_by_module():
    """An unasked exit restarts the job (restarts 1); worker events count per module."""
    t = make()
    guid = await t.init.launch(DEMO)
    t.reactor.spawned[0].exit(1)
    assert t.init.job(guid).state == "backoff"
    samples = await t.scrape()
    assert value(samples, "proactor_jobs", module=DEMO, state="backoff") == 1
    t.reactor.advance(t.init.job(guid).tracker.policy.backoff_initial)
    assert t.init.job(guid).state == "ready"
    t.init.worker_event(guid, "progress", {"done": 1})
    t.init.worker_event(guid, "progress", {"done": 2})
    samples = await t.scrape()
    assert value(samples, "proactor_job_restarts", module=DEMO) == 1
    assert value(samples, "proactor_jobs", module=DEMO, state="ready") == 1
    assert value(samples, "proactor_jobs", module=DEMO, state="backoff") == 0
    assert value(samples, "proactor_job_transitions_total", module=DEMO, state="starting") == 2
    assert value(samples, "proactor_job_transitions_total", module=DEMO, state="backoff") == 1
    assert value(samples, "proactor_worker_events_total", module=DEMO) == 2
    # two spawns, each ready: the launch -> ready histogram counted both
    assert value(samples, "proactor_job_ready_seconds_count", module=DEMO) == 2
    assert value(samples, "proactor_job_ready_seconds_bucket", module=DEMO, le="+Inf") == 2


@pytest_twisted.ensureDeferred
async def test_no_jobs_yet_is_only_the_info():
    """
    Before any job, no module is known: the info, the relay's counts at 0,
    and no hook gauges without hooks.
    """
    samples = await make().scrape()
    relay = {key: v for key, v in samples.items() if key[0].startswith("proactor_relay")}
    assert {key: v for key, v in samples.items() if key not in relay} == {
        ("proactor_info", frozenset({("version", __version__)})): 1.0}
    assert set(relay.values()) == {0.0}
    assert value(samples, "proactor_relay_requests_total", code="2xx") == 0


@pytest_twisted.ensureDeferred
async def test_relayed_requests_are_counted_by_status_class_and_timed():
    """Each relayed answer: one count under its status class, one latency observation."""
    t = make()
    guid = await t.init.launch(DEMO)
    for path in ("health", "health", "missing"):
        response, _ = await t.get(f"/jobs/{guid}/proxy/{path}")
        assert response.code in (200, 404)
    samples = await t.scrape()
    assert value(samples, "proactor_relay_requests_total", code="2xx") == 2
    assert value(samples, "proactor_relay_requests_total", code="4xx") == 1
    assert value(samples, "proactor_relay_seconds_count") == 3
    assert value(samples, "proactor_relay_seconds_bucket", le="+Inf") == 3


# -- auth and absence ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_metrics_need_the_admin_token():
    """No token, a wrong one or a job's own: 401 JSON, never the metrics."""
    t = make()
    guid = await t.init.launch(DEMO)
    for token in (None, "wrong", t.init.job(guid).token):
        response, body = await t.get(token=token)
        is_error(response, body, 401)
        assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]
        assert b"proactor_" not in body


@pytest_twisted.ensureDeferred
async def test_an_api_without_metrics_answers_404():
    """Built without metrics: 404 JSON with the token, 401 without it."""
    t = make(metrics=False)
    is_error(*await t.get(), 404)
    is_error(*await t.get(token=None), 401)


# -- web-hooks -------------------------------------------------------------------


@attrs.frozen
class _Answer:
    code: int


class _ByPath:
    """A treq-like client: hooks at ``/ok`` get 204, ``/bad`` 500, ``/gone`` 410."""

    codes = {"ok": 204, "bad": 500, "gone": 410}

    def post(self, url: str, **kwargs: Any) -> Deferred[Any]:
        return succeed(_Answer(self.codes[url.rsplit("/", 1)[-1]]))


@pytest_twisted.ensureDeferred
async def test_hook_numbers_are_summed_over_a_real_dispatcher():
    """Delivered, dropped, queued and failed attempts, summed over every hook."""
    reactor = FakeProcessReactor()
    hooks = HookDispatcher(reactor, _ByPath())
    t = make(hooks=hooks)
    t.init.subscribe(hooks.publish)
    for path in ("ok", "bad", "gone"):
        hooks.add(f"http://127.0.0.1:9/{path}", ["*"])
    await t.init.launch(DEMO)  # three records: waiting, starting, ready
    samples = await t.scrape()
    assert value(samples, "proactor_hooks") == 3
    assert value(samples, "proactor_hook_delivered") == 3  # /ok
    assert value(samples, "proactor_hook_dropped") == 3  # /gone
    assert value(samples, "proactor_hook_queued") == 3  # /bad: one retrying, two waiting
    assert value(samples, "proactor_hook_failed_attempts") == 1
    _, body = await t.get()
    for hook in hooks.list():
        assert hook["id"].encode() not in body


class _FakeHooks:
    def list(self) -> list[dict[str, Any]]:
        return [
            {"id": "a", "queued": 1, "delivered": 10, "dropped": 0, "failed_attempts": 3},
            {"id": "b", "queued": 4, "delivered": 5, "dropped": 2, "failed_attempts": 0},
        ]


@pytest_twisted.ensureDeferred
async def test_hook_numbers_with_a_fake_dispatcher():
    """Any object with ``list()`` will do; each field is the sum over its hooks."""
    samples = await make(hooks=_FakeHooks()).scrape()
    got = {name: value(samples, f"proactor_hook{name}")
           for name in ("s", "_queued", "_delivered", "_dropped", "_failed_attempts")}
    assert got == {"s": 2, "_queued": 5, "_delivered": 15, "_dropped": 2,
                   "_failed_attempts": 3}


# -- side by side ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_each_metrics_counts_on_its_own_and_close_stops_counting():
    """Two Metrics side by side count apart, none in prometheus_client's global
    registry; close stops the counters."""
    t = make()
    other = Metrics(t.init)
    await t.init.launch(DEMO)
    other.close()
    await t.init.launch(DEMO)
    mine, theirs = await t.scrape(), parse(other.render()[0])
    assert value(mine, "proactor_job_transitions_total", module=DEMO, state="starting") == 2
    assert value(theirs, "proactor_job_transitions_total", module=DEMO, state="starting") == 1
    assert value(theirs, "proactor_jobs", module=DEMO, state="ready") == 2  # read at scrape
    assert prometheus_client.REGISTRY.get_sample_value("proactor_info",
                                                       {"version": __version__}) is None


# -- end to end ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_real_daemon_serves_its_metrics(daemons, reactor):
    """twistd proactor: a ready demo job shows in /metrics; once stopped, as exited."""
    daemon = await daemons(size=50)

    async def call(method: str, path: str, body: Any = None) -> tuple[Any, bytes]:
        data = None if body is None else json.dumps(body).encode()
        response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                      data=data, timeout=40, reactor=reactor)
        content: bytes = await response.content()
        assert daemon.token.encode() not in content
        return response, content

    response, body = await call("POST", "/jobs", {"module": DEMO})
    assert response.code == 201, body
    guid = json.loads(body)["guid"]
    response, body = await call("GET", f"/jobs/{guid}?wait=ready&timeout=30")
    assert json.loads(body)["state"] == "ready", body
    response, body = await call("GET", "/metrics")
    assert response.code == 200, body
    assert response.headers.getRawHeaders(b"content-type") == [CONTENT_TYPE_LATEST.encode()]
    assert f'proactor_jobs{{module="{DEMO}",state="ready"}} 1.0'.encode() in body.splitlines()
    assert guid.encode() not in body
    response, body = await call("DELETE", f"/jobs/{guid}")
    assert response.code == 202, body
    response, body = await call("GET", f"/jobs/{guid}?wait=exited&timeout=30")
    assert json.loads(body)["state"] == "exited", body
    samples = parse((await call("GET", "/metrics"))[1])
    assert value(samples, "proactor_jobs", module=DEMO, state="exited") == 1
    assert value(samples, "proactor_jobs", module=DEMO, state="ready") == 0
    assert value(samples, "proactor_job_transitions_total", module=DEMO, state="exited") == 1
    assert value(samples, "proactor_hook_queued") == 0
    response = await treq.get(daemon.url + "/metrics", timeout=10, reactor=reactor)
    assert response.code == 401
    await response.content()
