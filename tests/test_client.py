"""
The control API client against the real ControlAPI, in memory (StubTreq):
an Initiator on a fake process reactor, a fake worker behind the relay.
"""

import json

import pytest
import pytest_twisted
from klein import Klein
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs, formatEvent
from twisted.web.resource import Resource
from twisted.web.server import Site

from turberfield_twisted import Initiator, LocalLauncher
from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.errors import ApiError, TransportError
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.serving import serve
from turberfield_twisted.worker.parent import ParentClient, error_message, make_http

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "admin-token-for-tests"
URL = "http://127.0.0.1:8080"


class FakeWorker:
    """What every job's port answers in these tests."""

    app = Klein()

    @app.route("/health")
    def health(self, request):
        return b"{}"

    @app.route("/echo", methods=["POST"])
    def echo(self, request):
        request.setHeader("Content-Type", "application/json")
        body = json.loads(request.content.read())
        return json.dumps({"echo": body, "args": {k.decode(): [v.decode() for v in vs]
                                                  for k, vs in request.args.items()}}).encode()

    @app.route("/missing")
    def missing(self, request):
        request.setResponseCode(404)
        request.setHeader("Content-Type", "text/plain")
        return b"nothing here"


class Down(Resource):
    """A worker that never says it is healthy."""

    isLeaf = True

    def render(self, request):
        request.setResponseCode(503)
        return b""


class World:
    """
    An Initiator with a ControlAPI and a client of it, all in memory; its workers are
    ``workers`` (a resource: by default a FakeWorker's app).
    """

    def __init__(self, workers=None):
        self.reactor = FakeProcessReactor()
        launcher = LocalLauncher(self.reactor, python="/py", setsid=None, process_groups=False)
        worker_http = StubTreq(workers or FakeWorker().app.resource())
        self.initiator = Initiator(None, guid="init", cfg=initiator_config(23000, 23009),
                                   reactor=self.reactor, launcher=launcher, http=worker_http)
        self.hooks = HookDispatcher(self.reactor, worker_http)
        self.api = ControlAPI(self.initiator, TOKEN, self.reactor, hooks=self.hooks,
                              relay_agent=RequestTraversalAgent(FakeWorker().app.resource()))
        self.http = StubTreq(self.api.app.resource())
        self.client = self.make_client(TOKEN)
        self.events = []
        self.initiator.subscribe(self.events.append)

    def make_client(self, token):
        return ControlClient(self.http, URL, token, self.reactor, timeout=5)

    def parent(self, guid, token):
        return ParentClient(self.http, URL, guid, token, self.reactor, timeout=5)


@pytest.fixture
def world():
    return World()


@pytest_twisted.ensureDeferred
async def test_launch_list_show_logs_and_stop(world):
    """The job calls go through: launch, jobs, job, logs, stop; health counts jobs."""
    client = world.client
    assert await client.health() == {"status": "ok", "jobs": 0}
    job = await client.launch(DEMO, session="s-1", config={"greeting": "bonjour"})
    guid = job["guid"]
    assert (job["module"], job["session"], job["state"]) == (DEMO, "s-1", "ready")
    assert job["config"] == {"greeting": "bonjour"}
    assert [j["guid"] for j in await client.jobs()] == [guid]
    assert (await client.job(guid))["port"] == 23000
    assert (await client.health())["jobs"] == 1
    [proc] = world.reactor.spawned
    proc.protocol.childDataReceived(1, b"one\ntwo\nthree\n")
    lines = await client.logs(guid, lines=2)
    assert [(e["stream"], e["line"]) for e in lines] == [("stdout", "two"), ("stdout", "three")]
    stopping = await client.stop(guid)
    assert stopping["state"] == "stopping"
    proc.exit(0)
    assert (await client.job(guid))["state"] == "exited"


@pytest_twisted.ensureDeferred
async def test_errors_carry_status_and_message(world):
    """401, 404, 400 and 403 from the API are ApiError with the API's own message."""
    with pytest.raises(ApiError) as caught:
        await world.make_client("wrong").jobs()
    assert (caught.value.status, caught.value.message) == (401, "unauthorized")
    with pytest.raises(ApiError) as caught:
        await world.client.job("nope")
    assert caught.value.status == 404 and "nope" in caught.value.message
    with pytest.raises(ApiError) as caught:
        await world.client.launch(DEMO, config={"greeting": ["a", "list"]})
    assert caught.value.status == 400 and "greeting" in caught.value.message
    with pytest.raises(ApiError) as caught:
        await world.client.launch(DEMO, config={"token": "mine"})
    assert caught.value.status == 403
    with pytest.raises(ApiError) as caught:
        await world.client.launch("no.such.module")
    assert caught.value.status == 404
    assert str(caught.value).endswith("(HTTP 404)")
    assert world.reactor.spawned == []


@pytest_twisted.ensureDeferred
async def test_the_token_is_in_no_error_or_repr(world):
    """A refused call's error and the client's repr never show the token."""
    client = world.make_client("do-not-show-me")
    with pytest.raises(ApiError) as caught:
        await client.launch(DEMO)
    assert "do-not-show-me" not in str(caught.value) + repr(caught.value) + repr(client)


@pytest_twisted.ensureDeferred
async def test_a_non_json_error_gives_a_short_text():
    """An error page that is not JSON becomes its first line, cut short."""
    page = Resource()
    page.isLeaf = True
    page.render_GET = lambda request: (request.setResponseCode(502),
                                       b"<html>Bad Gateway" + b"!" * 500 + b"\nmore")[1]
    client = ControlClient(StubTreq(page), URL, TOKEN, FakeProcessReactor(), timeout=5)
    with pytest.raises(ApiError) as caught:
        await client.health()
    assert caught.value.status == 502
    assert caught.value.message.startswith("<html>Bad Gateway!!")
    assert len(caught.value.message) == 200
    assert error_message(b"", 503) == "HTTP 503"
    assert error_message(b'{"error": "why"}', 400) == "why"


@pytest_twisted.ensureDeferred
async def test_send_relays_to_the_worker_and_returns_any_status(world):
    """send gives (status, content type, body) whatever the status; the path is quoted."""
    guid = (await world.client.launch(DEMO))["guid"]
    status, ctype, body = await world.client.send(guid, "post", "/echo", json={"n": 1},
                                                  params={"q": "a b"})
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"echo": {"n": 1}, "args": {"q": ["a b"]}}
    status, ctype, body = await world.client.send(guid, "GET", "missing")
    assert (status, ctype, body) == (404, "text/plain", b"nothing here")
    status, _, body = await world.client.send("no-such-job", "GET", "/")
    assert status == 404 and "no-such-job" in json.loads(body)["error"]


@pytest_twisted.ensureDeferred
async def test_update_config_changes_a_starting_job():
    """PATCH config: allowed keys land in the job's overrides; others are 403."""
    world = World(Down())  # never healthy: the job stays starting
    guid = (await world.client.launch(DEMO))["guid"]
    assert world.initiator.job(guid).state == "starting"
    patched = Deferred.fromCoroutine(world.client.update_config(guid, {"greeting": "hej"}))
    assert not patched.called  # it waits for the job to be ready to push the change...
    world.reactor.spawned[-1].exit(1)  # ...and gives up waiting when the job ends
    world.http.flush()
    job = await patched
    assert job["config"] == {"greeting": "hej"}
    assert world.initiator.job(guid).overrides == {"greeting": "hej"}  # for its next start
    with pytest.raises(ApiError) as caught:
        await world.client.update_config(guid, {"listen_port": "1"})
    assert caught.value.status == 403


@pytest_twisted.ensureDeferred
async def test_hooks_add_list_remove(world):
    """add_hook shows the secret once; hooks lists it without; remove_hook drops it."""
    hook = await world.client.add_hook("http://127.0.0.1:9/hook", ["ready", "worker:notified"])
    assert set(hook) >= {"id", "url", "events", "secret"}
    [listed] = await world.client.hooks()
    assert listed["id"] == hook["id"] and "secret" not in listed
    assert listed["events"] == ["ready", "worker:notified"]
    await world.client.remove_hook(hook["id"])
    assert await world.client.hooks() == []
    with pytest.raises(ApiError) as caught:
        await world.client.remove_hook(hook["id"])
    assert caught.value.status == 404
    with pytest.raises(ApiError) as caught:
        await world.client.add_hook("http://192.0.2.1/hook", ["ready"])
    assert caught.value.status in (400, 403)


@pytest_twisted.ensureDeferred
async def test_parent_client_posts_events_and_fetches_its_config(world):
    """A job's own token posts events and reads its config (without the token)."""
    guid = (await world.client.launch(DEMO, config={"greeting": "hi"}))["guid"]
    token = world.initiator.job(guid).token
    parent = world.parent(guid, token)
    await parent.post_event("notified", {"n": 1})
    [event] = [e for e in world.events if e.kind == "worker"]
    assert (event.guid, event.name, event.data) == (guid, "notified", {"n": 1})
    config = await parent.fetch_config()
    assert config["guid"] == guid
    assert config["section"]["greeting"] == "hi"
    assert "token" not in config["section"] and token not in json.dumps(config)


@pytest_twisted.ensureDeferred
async def test_a_job_token_opens_only_its_own_job(world):
    """Another job's guid, or the admin token, is 401 for the job calls."""
    first = (await world.client.launch(DEMO))["guid"]
    second = (await world.client.launch(DEMO))["guid"]
    token = world.initiator.job(first).token
    for client in (world.parent(second, token), world.parent(first, TOKEN)):
        with pytest.raises(ApiError) as caught:
            await client.fetch_config()
        assert caught.value.status == 401
        with pytest.raises(ApiError) as caught:
            await client.post_event("notified")
        assert caught.value.status == 401
    with pytest.raises(ApiError) as caught:
        await world.make_client(token).jobs()
    assert caught.value.status == 401


@pytest_twisted.ensureDeferred
async def test_no_answer_in_time_is_a_transport_error():
    """A request that never answers fails with TransportError after ``timeout``."""

    class Silent:
        def request(self, *args, **kwargs):
            assert kwargs["timeout"] == 2 and kwargs["reactor"] is clock
            return Deferred()

    clock = FakeProcessReactor()
    waiting = Deferred.fromCoroutine(ControlClient(Silent(), URL, TOKEN, clock, timeout=2).jobs())
    clock.advance(1.9)
    assert not waiting.called
    clock.advance(0.2)
    with pytest.raises(TransportError, match=r"no answer from http://127\.0\.0\.1:8080 within 2s"):
        await waiting


@pytest_twisted.ensureDeferred
async def test_refused_connection_is_a_transport_error(reactor, take_ports):
    """Nothing listening: TransportError naming the address, on a real pool."""
    number = take_ports(1).low  # held, and nothing listens there
    http, pool = make_http(reactor)
    try:
        client = ControlClient(http, f"http://127.0.0.1:{number}", TOKEN, reactor, timeout=5)
        with pytest.raises(TransportError, match=rf"cannot reach http://127\.0\.0\.1:{number}"):
            await client.health()
    finally:
        await pool.closeCachedConnections()


class _Empty(Resource):
    """Answers every GET with ``{}``."""

    isLeaf = True

    def render_GET(self, request):
        return b"{}"


@pytest_twisted.ensureDeferred
async def test_make_http_uses_one_quiet_pool(reactor):
    """
    make_http: a treq client on the pool it returns (closing that closes the client's
    idle connection), which retries nothing on its own and whose connections are not
    logged.
    """
    _, pool = make_http(reactor, persistent=False)
    assert pool.persistent is False
    with free_ports(10) as held:
        server = await serve(reactor, Site(_Empty()), held.low)
        http, pool = make_http(reactor)
        assert pool.persistent is True and pool.retryAutomatically is False
        try:
            with capturedLogs() as events:
                response = await http.get(f"http://127.0.0.1:{held.low}/", timeout=5,
                                          reactor=reactor)
                assert (response.code, await response.content()) == (200, b"{}")
                assert server.connections == 1  # kept in the pool for the next request
                await pool.closeCachedConnections()
        finally:
            await server.down()
    assert [formatEvent(e) for e in events if "factory" in formatEvent(e)] == []


@pytest_twisted.ensureDeferred
async def test_a_client_given_no_http_builds_its_own_on_first_use(reactor):
    """http=None: make_http runs on first use, once; close() closes that pool."""
    client = ParentClient(None, URL, "job-1", "t", reactor)
    assert client._pool is None
    assert await client.close() is None  # nothing built: nothing to close
    http = client.http
    assert client.http is http and client._pool is not None
    assert client._pool.persistent is True
    assert await client.close() is None


@pytest_twisted.ensureDeferred
async def test_a_client_given_http_closes_nothing(world):
    """A client given its http object leaves its pool to whoever made it."""
    client = world.parent("job-1", "t")
    assert client.http is world.http
    assert await client.close() is None and client._pool is None
