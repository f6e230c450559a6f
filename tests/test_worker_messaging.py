"""
Workers talking with their initiator: events posted through ``ctx.parent``,
config pushed to ``POST /_proactor/config`` and handed to ``on_config``, and
a job's token opening only its own job's calls.

The first tests run in memory; the last ones run real workers against a
real ControlAPI on 127.0.0.1. Run as ``python -m test_worker_messaging``
this module is a worker itself (:class:`Asker`): so it takes ``Klein``
from the worker runtime, which installs the asyncio reactor, and imports
``api`` (which imports klein) only inside the fixture.
"""

import argparse
import json
import os
from pathlib import Path

import pytest
import pytest_twisted
from conftest import initiator_config
from treq.testing import StubTreq
from twisted.internet.defer import Deferred

from turberfield_twisted import (
    BadOverride,
    ChangeRefused,
    Initiator,
    LocalLauncher,
    OverrideNotAllowed,
    UnknownJob,
)
from turberfield_twisted.client import ApiError, ConfigPushFailed, ParentClient, make_http
from turberfield_twisted.config import job_config_text, parse_config
from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.testing.fakes import FakeProcessReactor
from turberfield_twisted.testing.procs import children_of, wait_gone
from turberfield_twisted.worker import Klein, WorkerContext, _Runtime, run_worker

DEMO = "turberfield_twisted.demo.hello"
ASKER = "test_worker_messaging"
TOKEN = "admin-token-for-tests"
JOB_TOKEN = "job-token-for-tests"


class Asker:
    """A worker that asks its initiator for any job's config, with its own token."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/ask/<guid>")
    async def ask(self, request, guid):
        assert self.ctx.parent is not None
        parent = self.ctx.parent
        other = ParentClient(parent.http, parent.url, guid, self.ctx._token, self.ctx.reactor,
                             timeout=5)
        try:
            answer = await other.fetch_config()
        except ApiError as exc:
            return json.dumps({"status": exc.status, "error": exc.message})
        return json.dumps({"status": 200, "guid": answer["guid"]})


# -- the worker's config route, in memory -------------------------------------


def make_runtime(reactor, user_factory=Hello):
    """A worker runtime as after reading its config: job ``job-1``, token JOB_TOKEN."""
    runtime = _Runtime(reactor, argparse.Namespace(guid="job-1", port=1), user_factory, 1)
    runtime.proactor.cfg = parse_config(
        f"[job-1]\ngreeting = hello\ntoken = {JOB_TOKEN}\nsecret = shh\n")
    runtime.ctx = WorkerContext("job-1", 1, reactor, runtime.proactor, token=JOB_TOKEN)
    runtime.user = user_factory(runtime.ctx)
    runtime.user_resource = runtime.user.app.resource()
    return runtime, StubTreq(runtime.app.resource())


async def post_config(http, text, token=JOB_TOKEN):
    headers = {b"Authorization": [f"Bearer {token}".encode()]} if token else {}
    response = await http.post("http://127.0.0.1:1/_proactor/config", data=text.encode(),
                               headers=headers, timeout=5, reactor=None)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_config_route_applies_and_calls_on_config(reactor):
    """A good push replaces the config and reaches on_config without secrets."""
    runtime, http = make_runtime(reactor)
    text = f"[DEFAULT]\nsite = x\n\n[job-1]\ngreeting = hej\ntoken = {JOB_TOKEN}\nsecret = s\n"
    assert await post_config(http, text) == (200, {"applied": True})
    assert runtime.proactor.cfg["job-1"]["greeting"] == "hej"
    assert runtime.user.section == {"greeting": "hej"}
    response = await http.get("http://127.0.0.1:1/", timeout=5, reactor=reactor)
    assert json.loads(await response.content())["config"] == {"greeting": "hej"}


@pytest.mark.parametrize("token", [None, "wrong", JOB_TOKEN + "x", ""])
@pytest_twisted.ensureDeferred
async def test_config_route_needs_the_jobs_own_token(reactor, token):
    """No token or another one: 401, and the config is untouched."""
    runtime, http = make_runtime(reactor)
    code, body = await post_config(http, "[job-1]\ngreeting = hej\n", token=token)
    assert code == 401 and "token" in body["error"]
    assert runtime.proactor.cfg["job-1"]["greeting"] == "hello"


@pytest.mark.parametrize(("header", "code"), [
    (f"bearer {JOB_TOKEN}", 200),
    (f"BEARER  {JOB_TOKEN} ", 200),
    (f"Basic {JOB_TOKEN}", 401),
    (JOB_TOKEN, 401),
])
@pytest_twisted.ensureDeferred
async def test_config_route_reads_the_bearer_scheme_in_any_case(reactor, header, code):
    """The token counts only after ``Bearer`` (any case, spaces around it ignored)."""
    _, http = make_runtime(reactor)
    response = await http.post("http://127.0.0.1:1/_proactor/config",
                               data=b"[job-1]\ngreeting = hej\n",
                               headers={b"Authorization": [header.encode()]},
                               timeout=5, reactor=None)
    assert response.code == code


@pytest.mark.parametrize("text", [
    "greeting = no section\n",
    "[job-1]\ngreeting = ${nowhere:key}\n",
    "[job-2]\ngreeting = hej\n",
    "[job-1]\ngreeting = hej\n[other]\nkey = 1\n",
])
@pytest_twisted.ensureDeferred
async def test_config_route_takes_only_this_jobs_section(reactor, text):
    """Malformed text, or any section but this job's own: 400, config untouched."""
    runtime, http = make_runtime(reactor)
    code, body = await post_config(http, text)
    assert code == 400 and body["error"]
    assert runtime.proactor.cfg["job-1"]["greeting"] == "hello"


@pytest_twisted.ensureDeferred
async def test_a_refusing_on_config_is_a_422_and_the_worker_keeps_its_config(reactor):
    """on_config raising: 422 with its reason; the worker's config is the one it had."""

    class Refuses(Hello):
        def on_config(self, section):
            raise ValueError("greeting must not be x")

    runtime, http = make_runtime(reactor, Refuses)
    assert await post_config(http, "[job-1]\ngreeting = x\n") == (
        422, {"error": "ValueError: greeting must not be x"})
    assert runtime.proactor.cfg.get("job-1", "greeting") == "hello"


# -- Initiator.update_config, on a fake reactor -------------------------------


class FakeWorker:
    """Answers health, and records config pushes (answering ``answer``)."""

    app = Klein()

    def __init__(self):
        self.pushes = []
        self.answer = 200

    @app.route("/health")
    def health(self, request):
        return b"{}"

    @app.route("/_proactor/config", methods=["POST"])
    def config(self, request):
        self.pushes.append((request.getHeader(b"authorization"), request.content.read()))
        request.setResponseCode(self.answer)
        return json.dumps({"applied": True} if self.answer == 200 else {"error": "nope"})


def fake_initiator():
    reactor = FakeProcessReactor()
    worker = FakeWorker()
    init = Initiator(None, guid="init", cfg=initiator_config(23000, 23009), reactor=reactor,
                     launcher=LocalLauncher(reactor, python="/py", setsid=None,
                                            process_groups=False),
                     http=StubTreq(worker.app.resource()))
    return init, worker


@pytest_twisted.ensureDeferred
async def test_update_config_pushes_the_jobs_config_to_a_ready_job():
    """A ready job is sent its config text, escaped, with its own token."""
    init, worker = fake_initiator()
    guid = await init.launch(DEMO)
    assert init.job(guid).state == "ready"
    job = await init.update_config(guid, {"greeting": "hej", "api_key": "a$b"})
    assert job.overrides == {"greeting": "hej", "api_key": "a$b"}
    [(auth, body)] = worker.pushes
    assert auth == f"Bearer {job.token}".encode()
    assert body.decode() == job_config_text(init.cfg, guid)
    seen = parse_config(body.decode())
    assert seen.sections() == [guid]
    assert (seen[guid]["greeting"], seen[guid]["api_key"]) == ("hej", "a$b")


@pytest_twisted.ensureDeferred
async def test_a_failed_push_changes_nothing():
    """A worker that answers an error: ConfigPushFailed with its status; nothing is kept."""
    init, worker = fake_initiator()
    guid = await init.launch(DEMO, config={"greeting": "bonjour"})
    worker.answer = 401
    with pytest.raises(ConfigPushFailed, match=r"did not take its new config: nope \(HTTP 401\)"):
        await init.update_config(guid, {"greeting": "hej"})
    assert init.job(guid).overrides == {"greeting": "bonjour"}
    assert init.cfg[guid]["greeting"] == "bonjour"


@pytest_twisted.ensureDeferred
async def test_a_refused_change_is_rolled_back_whole():
    """The worker refuses (422): ChangeRefused with its reason; no key of the change is kept."""
    init, worker = fake_initiator()
    guid = await init.launch(DEMO)
    worker.answer = 422
    with pytest.raises(ChangeRefused, match="refused the change: nope"):
        await init.update_config(guid, {"greeting": "hej", "api_key": "k"})
    assert init.job(guid).overrides == {}
    assert init.cfg[guid]["greeting"] == "hello" and not init.cfg.has_option(guid, "api_key")


@pytest_twisted.ensureDeferred
async def test_bad_changes_change_nothing_and_push_nothing():
    """A key that is not overridable, a bad value or an unknown job: no change, no push."""
    init, worker = fake_initiator()
    guid = await init.launch(DEMO, config={"greeting": "bonjour"})
    with pytest.raises(OverrideNotAllowed):
        await init.update_config(guid, {"greeting": "x", "token": "mine"})
    with pytest.raises(BadOverride):
        await init.update_config(guid, {"greeting": ["x"]})
    with pytest.raises(UnknownJob):
        await init.update_config("nope", {"greeting": "x"})
    assert init.job(guid).overrides == {"greeting": "bonjour"}
    assert init.cfg[guid]["greeting"] == "bonjour"
    assert worker.pushes == []


# -- real workers, a real control API -----------------------------------------


@pytest_twisted.async_yield_fixture
async def served(reactor):
    """An Initiator whose ControlAPI listens on 127.0.0.1; its jobs can reach it."""
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from turberfield_twisted.api import ControlAPI

    cfg = initiator_config(21400, 21449, pythonpath=str(Path(__file__).parent),
                           extra=f"[{ASKER}]\n")
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        ControlAPI(init, TOKEN, reactor).site())
    init.listening("127.0.0.1", port.getHost().port)
    init.startService()
    http, pool = make_http(reactor)
    try:
        yield init, http
    finally:
        pids = [job.pid for job in init.workers.values() if job.pid]
        await init.stopService()
        await wait_gone(reactor, pids)
        await port.stopListening()
        await pool.closeCachedConnections()
        assert children_of(os.getpid()) == []


async def call(http, reactor, method, url, body=None):
    response = await http.request(method, url, json=body, timeout=10, reactor=reactor)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_notify_reaches_an_observer(served, reactor):
    """A worker's POST /notify becomes a ``worker`` event seen by a subscriber."""
    init, http = served
    guid = await init.launch(DEMO)
    job = await init.ready(guid, timeout=15)
    seen: Deferred = Deferred()
    unsubscribe = init.subscribe(
        lambda e: e.kind == "worker" and not seen.called and seen.callback(e))
    try:
        code, body = await call(http, reactor, "POST", f"http://127.0.0.1:{job.port}/notify",
                                {"n": 1})
        assert (code, body) == (202, {"notified": True})
        event = await seen.addTimeout(10, reactor)
    finally:
        unsubscribe()
    assert (event.guid, event.name, event.data) == (guid, "notified", {"n": 1})


@pytest_twisted.ensureDeferred
async def test_update_config_reaches_on_config(served, reactor):
    """update_config on a ready job: the worker's GET / shows the new values."""
    init, http = served
    guid = await init.launch(DEMO, config={"greeting": "bonjour"})
    job = await init.ready(guid, timeout=15)
    await init.update_config(guid, {"greeting": "hej", "api_key": "k$1"})
    code, body = await call(http, reactor, "GET", f"http://127.0.0.1:{job.port}/")
    assert code == 200
    assert (body["config"]["greeting"], body["config"]["api_key"]) == ("hej", "k$1")
    assert "token" not in body["config"] and "secret" not in body["config"]


@pytest_twisted.ensureDeferred
async def test_a_worker_may_read_only_its_own_config(served, reactor):
    """With its own token a worker reads its own config; another job's is 401."""
    init, http = served
    asker, other = await init.launch(ASKER), await init.launch(DEMO)
    job = await init.ready(asker, timeout=15)
    await init.ready(other, timeout=15)
    base = f"http://127.0.0.1:{job.port}/ask"
    assert await call(http, reactor, "GET", f"{base}/{asker}") == (
        200, {"status": 200, "guid": asker})
    assert await call(http, reactor, "GET", f"{base}/{other}") == (
        200, {"status": 401, "error": "unauthorized"})


if __name__ == "__main__":
    run_worker(Asker)


@pytest.mark.parametrize(
    ("given", "used"),
    [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("127.0.0.5", "127.0.0.5"), ("::1", "::1"),
     ("localhost", "localhost")],
)
def test_parent_address_on_every_interface_is_reached_on_loopback(given, used):
    """A daemon listening on all interfaces is reached by its workers on loopback."""
    from turberfield_twisted.contract import reachable

    assert reachable(given) == used
