"""
Workers talking with their initiator: events posted through ``ctx.parent``,
config pushed to ``POST /_proactor/config`` and handed to ``on_config``, and
a job's token opening only its own job's calls.

The first tests run in memory (the testing kit's harness); the last ones
run real workers against a real ControlAPI on 127.0.0.1 (the kit's
``start_initiator``). Run as ``python -m test_worker_messaging`` this
module is a worker itself (:class:`Asker`).
"""

import json

import pytest
import pytest_twisted
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
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.errors import ApiError, ConfigPushFailed
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor
from turberfield_twisted.testing.harness import worker_harness
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.worker import Klein, WorkerContext, run_worker
from turberfield_twisted.worker.parent import ParentClient

DEMO = "turberfield_twisted.demo.hello"
ASKER = "test_worker_messaging"
TOKEN = "admin-token-for-tests"
#: Send the harness's own job token.
OWN = object()


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


def harness(factory=Hello):
    """The demo app (or ``factory``'s) in memory as job ``job-1``, its token made up."""
    return worker_harness(factory, {"greeting": "hello", "secret": "shh"}, guid="job-1",
                          module=DEMO)


async def post_config(h, text, token=OWN):
    token = h.token if token is OWN else token
    headers = {b"Authorization": [f"Bearer {token}".encode()]} if token else {}
    response = await h.client.post("/_proactor/config", data=text.encode(), headers=headers)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_config_route_applies_and_calls_on_config():
    """A good push replaces the config and reaches on_config without secrets."""
    h = harness()
    text = f"[DEFAULT]\nsite = x\n\n[job-1]\ngreeting = hej\ntoken = {h.token}\nsecret = s\n"
    assert await post_config(h, text) == (200, {"applied": True})
    assert h.config["job-1"]["greeting"] == "hej"
    assert h.app.section == {"greeting": "hej"}
    response = await h.client.get("/")
    assert (await response.json())["config"] == {"greeting": "hej"}


@pytest.mark.parametrize("token", [lambda own: None, lambda own: "wrong", lambda own: own + "x",
                                   lambda own: ""], ids=["none", "wrong", "longer", "empty"])
@pytest_twisted.ensureDeferred
async def test_config_route_needs_the_jobs_own_token(token):
    """No token or another one: 401, and the config is untouched."""
    h = harness()
    code, body = await post_config(h, "[job-1]\ngreeting = hej\n", token=token(h.token))
    assert code == 401 and "token" in body["error"]
    assert h.config["job-1"]["greeting"] == "hello"


@pytest.mark.parametrize(("header", "code"), [
    ("bearer {}", 200),
    ("BEARER  {} ", 200),
    ("Basic {}", 401),
    ("{}", 401),
])
@pytest_twisted.ensureDeferred
async def test_config_route_reads_the_bearer_scheme_in_any_case(header, code):
    """The token counts only after ``Bearer`` (any case, spaces around it ignored)."""
    h = harness()
    response = await h.client.post("/_proactor/config", data=b"[job-1]\ngreeting = hej\n",
                                   headers={b"Authorization": [header.format(h.token).encode()]})
    assert response.code == code


@pytest.mark.parametrize("text", [
    "greeting = no section\n",
    "[job-1]\ngreeting = ${nowhere:key}\n",
    "[job-2]\ngreeting = hej\n",
    "[job-1]\ngreeting = hej\n[other]\nkey = 1\n",
])
@pytest_twisted.ensureDeferred
async def test_config_route_takes_only_this_jobs_section(text):
    """Malformed text, or any section but this job's own: 400, config untouched."""
    h = harness()
    code, body = await post_config(h, text)
    assert code == 400 and body["error"]
    assert h.config["job-1"]["greeting"] == "hello"


@pytest_twisted.ensureDeferred
async def test_a_refusing_on_config_is_a_422_and_the_worker_keeps_its_config():
    """on_config raising: 422 with its reason; the worker's config is the one it had."""

    class Refuses(Hello):
        def on_config(self, section):
            raise ValueError("greeting must not be x")

    h = harness(Refuses)
    assert await post_config(h, "[job-1]\ngreeting = x\n") == (
        422, {"error": "ValueError: greeting must not be x"})
    assert h.config.get("job-1", "greeting") == "hello"


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
    assert body.decode() == init.config_text(guid)
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
    assert parse_config(init.config_text(guid))[guid]["greeting"] == "bonjour"


@pytest_twisted.ensureDeferred
async def test_a_refused_change_is_rolled_back_whole():
    """The worker refuses (422): ChangeRefused with its reason; no key of the change is kept."""
    init, worker = fake_initiator()
    guid = await init.launch(DEMO)
    worker.answer = 422
    with pytest.raises(ChangeRefused, match="refused the change: nope"):
        await init.update_config(guid, {"greeting": "hej", "api_key": "k"})
    assert init.job(guid).overrides == {}
    own = parse_config(init.config_text(guid))[guid]
    assert own["greeting"] == "hello" and "api_key" not in own


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
    assert parse_config(init.config_text(guid))[guid]["greeting"] == "bonjour"
    assert worker.pushes == []


# -- real workers, a real control API -----------------------------------------


@pytest_twisted.async_fixture
async def served(start_initiator):
    """An initiator whose control API its jobs reach (they import this module: it is a worker)."""
    return await start_initiator(initiator_config(extra=f"[{ASKER}]\n"), ports=free_ports(50))


@pytest_twisted.ensureDeferred
async def test_notify_reaches_an_observer(served):
    """A worker's POST /notify becomes a ``worker`` event seen by a subscriber."""
    worker = await served.launch(DEMO)
    seen: Deferred = Deferred()
    served.init.subscribe(lambda e: e.kind == "worker" and not seen.called and seen.callback(e))
    response = await worker.client.post("/notify", json={"n": 1})
    assert (response.code, await response.json()) == (202, {"notified": True})
    event = await seen.addTimeout(10, served.reactor)
    assert (event.guid, event.name, event.data) == (worker.guid, "notified", {"n": 1})
    assert await worker.events.next() == ("notified", {"n": 1})


@pytest_twisted.ensureDeferred
async def test_update_config_reaches_on_config(served):
    """update_config on a ready job: the worker's GET / shows the new values."""
    worker = await served.launch(DEMO, config={"greeting": "bonjour"})
    await worker.push_config({"greeting": "hej", "api_key": "k$1"})
    response = await worker.client.get("/")
    body = await response.json()
    assert response.code == 200
    assert (body["config"]["greeting"], body["config"]["api_key"]) == ("hej", "k$1")
    assert "token" not in body["config"] and "secret" not in body["config"]


@pytest_twisted.ensureDeferred
async def test_a_refused_change_is_one_warning_line_in_the_workers_output(served):
    """A change its on_config refuses is one line of the worker's at warn, with the reason."""
    worker = await served.launch(DEMO, config={"greeting": "bonjour"})
    lines: list[str] = []
    refreshed: Deferred = Deferred()

    def seen(output):
        if output.guid == worker.guid:
            lines.append(output.line)
            if "config refreshed" in output.line and not refreshed.called:
                refreshed.callback(None)

    unsubscribe = served.init.subscribe_output(seen)
    try:
        with pytest.raises(ChangeRefused):
            await worker.push_config({"greeting": ""})
        await worker.push_config({"greeting": "hej"})  # its line comes after the refusal's
        await refreshed.addTimeout(10, served.reactor)
    finally:
        unsubscribe()
    assert len(lines) == 2, lines
    assert lines[0].endswith(f"[turberfield_twisted.worker#warn] job {worker.guid}: on_config"
                             " refused the change: ValueError: greeting must be 1 to 80"
                             " characters"), lines


@pytest_twisted.ensureDeferred
async def test_a_worker_may_read_only_its_own_config(served):
    """With its own token a worker reads its own config; another job's is 401."""
    asker, other = await served.launch(ASKER), await served.launch(DEMO)
    for guid, answer in [(asker.guid, {"status": 200, "guid": asker.guid}),
                         (other.guid, {"status": 401, "error": "unauthorized"})]:
        response = await asker.client.get(f"/ask/{guid}")
        assert (response.code, await response.json()) == (200, answer)


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
