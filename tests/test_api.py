"""The control API over StubTreq, on an Initiator with a fake process reactor."""

from __future__ import annotations

import json
from ipaddress import ip_network
from typing import Any

import attrs
import pytest
import pytest_twisted
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyChannel

from turberfield_twisted import ChangeRefused, Initiator, JobEvent, LocalLauncher, UnknownJob
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.daemon.reconcile import Reconciler
from turberfield_twisted.errors import ConfigPushFailed
from turberfield_twisted.hooks.dispatcher import HookDispatcher, UnknownHook
from turberfield_twisted.hooks.rules import check_events, check_url
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.http.web import _LimitedRequest
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"
BASE = "http://127.0.0.1"


class _Health:
    """Health checks never answer: jobs stay ``starting``."""

    def get(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return Deferred()


@attrs.define
class Api:
    """One API under test: its clock, initiator, ControlAPI and client."""

    reactor: FakeProcessReactor
    init: Initiator
    api: ControlAPI
    stub: StubTreq
    bodies: list[bytes] = attrs.field(factory=list)

    async def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
                   raw: bytes | None = None, headers: dict[bytes, list[bytes]] | None = None,
                   ) -> tuple[Any, Any]:
        """One request: the response and its decoded JSON body (None if empty)."""
        sent = dict(headers or {})
        if token is not None:
            sent[b"Authorization"] = [b"Bearer " + token.encode()]
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        response = await self.stub.request(method, BASE + path, headers=sent, data=data,
                                           timeout=5, reactor=self.reactor)
        content = await response.content()
        self.check_no_token(content)
        return response, json.loads(content) if content else None

    def check_no_token(self, content: bytes) -> None:
        """No answer ever holds the admin token or a job's token."""
        self.bodies.append(content)
        assert TOKEN.encode() not in content
        for job in self.init.workers.values():
            assert job.token.encode() not in content

    async def launch(self, **kwargs: Any) -> str:
        guid: str = await self.init.launch(DEMO, **kwargs)
        return guid


def make(low: int = 23000, high: int = 23009, hooks: Any = None, http: Any = None,
         in_use: Any = None, store: Any = None, **kwargs: Any) -> Api:
    """
    An API on a fake process reactor; ``in_use(addr, port)`` replaces the bind
    probe; ``store`` is the initiator's.
    """
    reactor = FakeProcessReactor()
    probe = {} if in_use is None else {"in_use": in_use}
    launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False, **probe)
    init = Initiator(None, guid="init", cfg=initiator_config(low, high), reactor=reactor,
                     launcher=launcher, http=http or _Health(), store=store)
    api = ControlAPI(init, TOKEN, reactor, hooks=hooks, **kwargs)
    return Api(reactor, init, api, StubTreq(api.app.resource()))


def is_error(response: Any, body: Any, status: int) -> None:
    assert response.code == status, body
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]


# -- public and admin routes ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_health_needs_no_token_and_counts_jobs_not_ended():
    """GET /health answers without a token: status ok and the number of live jobs."""
    t = make()
    response, body = await t.call("GET", "/health", token=None)
    assert (response.code, body) == (200, {"status": "ok", "jobs": 0})
    first, _ = await t.launch(), await t.launch()
    t.init.stop(first)
    t.reactor.spawned[0].exit(0)
    response, body = await t.call("GET", "/health", token=None)
    assert body == {"status": "ok", "jobs": 1}


@pytest_twisted.ensureDeferred
async def test_launch_answers_201_with_the_job_and_its_location():
    """POST /jobs starts the module; the answer is the job, Location its URL, no token."""
    t = make()
    response, body = await t.call("POST", "/jobs", {"module": DEMO, "session": "s-1",
                                                    "config": {"greeting": "bonjour"}})
    assert response.code == 201
    guid = body["guid"]
    assert response.headers.getRawHeaders(b"location") == [f"/jobs/{guid}".encode()]
    assert body == t.init.job(guid).as_json()
    assert (body["module"], body["session"], body["state"]) == (DEMO, "s-1", "starting")
    assert body["config"] == {"greeting": "bonjour"}
    assert len(t.reactor.spawned) == 1


@pytest_twisted.ensureDeferred
async def test_list_and_get_jobs():
    """GET /jobs lists every job; GET /jobs/{guid} is one of them."""
    t = make()
    guids = [await t.launch(), await t.launch(session="x")]
    response, body = await t.call("GET", "/jobs")
    assert response.code == 200
    assert [job["guid"] for job in body["jobs"]] == guids
    response, body = await t.call("GET", f"/jobs/{guids[1]}")
    assert (response.code, body) == (200, {**t.init.job(guids[1]).as_json(), "uptime": 0,
                                           "host": "127.0.0.1", "node": None,  # not Slurm's
                                           "rss": None, "cpu": None})  # a fake process


@pytest_twisted.ensureDeferred
async def test_delete_answers_202_at_once_and_a_second_is_harmless():
    """DELETE sends TERM and answers 202 (stopping); again, 202 and no second TERM."""
    t = make()
    guid = await t.launch()
    [proc] = t.reactor.spawned
    response, body = await t.call("DELETE", f"/jobs/{guid}")
    assert (response.code, body["state"]) == (202, "stopping")
    response, body = await t.call("DELETE", f"/jobs/{guid}")
    assert (response.code, body["state"]) == (202, "stopping")
    assert proc.signals == ["TERM"]
    proc.exit(0)
    _, body = await t.call("GET", f"/jobs/{guid}")
    assert (body["state"], body["exit_code"]) == ("exited", 0)
    response, body = await t.call("DELETE", f"/jobs/{guid}")
    assert (response.code, body["state"]) == (202, "exited")


@pytest_twisted.ensureDeferred
async def test_get_job_can_wait_for_a_state():
    """?wait=stopping&timeout=T answers once the job gets there, or when time is up."""
    t = make()
    guid = await t.launch()
    waiting = t.call("GET", f"/jobs/{guid}?wait=exited&timeout=5")
    done = Deferred.fromCoroutine(waiting)
    assert not done.called
    t.init.stop(guid)
    t.reactor.spawned[0].exit(0)
    t.stub.flush()
    response, body = await done
    assert (response.code, body["state"]) == (200, "exited")
    other = await t.launch()
    done = Deferred.fromCoroutine(t.call("GET", f"/jobs/{other}?wait=ready&timeout=2"))
    t.reactor.advance(2.5)
    t.stub.flush()
    response, body = await done
    assert (response.code, body["state"]) == (200, "starting")
    for query in ("wait=sleeping", "wait=ready&timeout=61", "wait=ready&timeout=x"):
        is_error(*await t.call("GET", f"/jobs/{other}?{query}"), 400)


@pytest_twisted.ensureDeferred
async def test_logs_are_the_last_lines_of_output():
    """GET /jobs/{guid}/logs?lines=N: the job's last N output lines (default 100)."""
    t = make()
    guid = await t.launch()
    job = t.init.job(guid)
    for i in range(150):
        job.tail.append(float(i), "stdout" if i % 2 else "stderr", f"line {i}")
    response, body = await t.call("GET", f"/jobs/{guid}/logs?lines=2")
    assert response.code == 200
    assert body == {"guid": guid, "lines": job.tail.lines()[-2:]}
    assert [line["line"] for line in body["lines"]] == ["line 148", "line 149"]
    _, body = await t.call("GET", f"/jobs/{guid}/logs")
    assert len(body["lines"]) == 100
    for bad in ("0", "1001", "-1", "x", "1.5", ""):
        is_error(*await t.call("GET", f"/jobs/{guid}/logs?lines={bad}"), 400)


# -- a job's own routes --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_config_is_the_jobs_own_less_secrets_with_its_token_only():
    """GET /config/{guid}: DEFAULT and the job's section, no secrets; only its token opens it."""
    t = make()
    t.init.cfg["DEFAULT"]["region"] = "eu"
    t.init.cfg["DEFAULT"]["admin_token"] = "not-for-jobs"
    guid, other = await t.launch(session="s-9"), await t.launch()
    job = t.init.job(guid)
    response, body = await t.call("GET", f"/config/{guid}", token=job.token)
    assert response.code == 200
    assert body["guid"] == guid
    assert body["default"] == {"region": "eu"}
    section = body["section"]
    assert (section["greeting"], section["session"], section["listen_port"]) == (
        "hello", "s-9", str(job.port))
    assert "token" not in section and "secret" not in section
    assert b"s3cr3t-demo-value" not in t.bodies[-1] and b"not-for-jobs" not in t.bodies[-1]
    for token in (None, TOKEN, t.init.job(other).token, "wrong", ""):
        response, body = await t.call("GET", f"/config/{guid}", token=token)
        is_error(response, body, 401)
        assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]
    is_error(*await t.call("GET", "/config/no-such-job", token=job.token), 401)


@pytest_twisted.ensureDeferred
async def test_worker_events_need_the_jobs_own_token():
    """POST /jobs/{guid}/events with the job's token passes the event on (202)."""
    t = make()
    guid, other = await t.launch(), await t.launch()
    seen: list[JobEvent] = []
    t.init.subscribe(seen.append)
    token = t.init.job(guid).token
    response, body = await t.call("POST", f"/jobs/{guid}/events",
                                  {"event": "progress", "data": {"done": 3}}, token=token)
    assert (response.code, body) == (202, {"accepted": True})
    assert [(r.kind, r.name, r.guid, r.data) for r in seen] == [
        ("worker", "progress", guid, {"done": 3})]
    for bad in (TOKEN, t.init.job(other).token, None):
        is_error(*await t.call("POST", f"/jobs/{guid}/events", {"event": "x"}, token=bad), 401)
    for body in ({"event": "has space"}, {"event": 5}, {}, {"event": "x", "more": 1},
                 {"event": "x" * 65}):
        is_error(*await t.call("POST", f"/jobs/{guid}/events", body, token=token), 400)
    assert len(seen) == 1


# -- config changes -------------------------------------------------------------


class _ReadyWorker:
    """Answers health at once and takes config pushes: jobs become ``ready``."""

    app = Klein()

    @app.route("/health")
    def health(self, request: Any) -> bytes:
        return b"{}"

    @app.route("/_proactor/config", methods=["POST"])
    def config(self, request: Any) -> bytes:
        return b'{"applied": true}'


@pytest_twisted.ensureDeferred
async def test_patch_config_with_the_initiators_update_config():
    """PATCH /jobs/{guid}/config: 200 and the job; a key not allowed 403, a bad value 400."""
    t = make(http=StubTreq(_ReadyWorker().app.resource()))
    guid = await t.launch()
    assert t.init.job(guid).state == "ready"
    response, body = await t.call("PATCH", f"/jobs/{guid}/config", {"greeting": "hi"})
    assert (response.code, body["guid"], body["config"]) == (200, guid, {"greeting": "hi"})
    assert parse_config(t.init.config_text(guid))[guid]["greeting"] == "hi"
    assert not t.init.cfg.has_section(guid)  # the operator's config is left as it was
    is_error(*await t.call("PATCH", f"/jobs/{guid}/config", {"token": "x"}), 403)
    is_error(*await t.call("PATCH", f"/jobs/{guid}/config", {"greeting": ["a"]}), 400)
    is_error(*await t.call("PATCH", f"/jobs/{guid}/config", raw=b"[1]"), 400)
    is_error(*await t.call("PATCH", "/jobs/nope/config", {"greeting": "x"}), 404)
    assert t.init.job(guid).overrides == {"greeting": "hi"}


@pytest_twisted.ensureDeferred
async def test_patch_config_says_whether_the_change_is_kept_for_the_next_start():
    """A launched job's change is kept; a declared job's is not, and the answer says where."""
    t = make(http=StubTreq(_ReadyWorker().app.resource()))
    cfg = initiator_config(23000, 23009, extra=f"[job:cache]\nmodule = {DEMO}\n")
    t.init.reconfigure(cfg, check_config(cfg, "init"))
    guid = await t.launch()
    response, body = await t.call("PATCH", f"/jobs/{guid}/config", {"greeting": "hi"})
    assert (response.code, body["kept"], "note" in body) == (200, True, False)
    await t.init.launch(DEMO, guid="cache")
    t.init.job("cache").declared = True
    response, body = await t.call("PATCH", "/jobs/cache/config", {"greeting": "hi"})
    assert (response.code, body["kept"]) == (200, False)
    assert body["note"] == ("job cache is declared in <config>: this change lasts until the"
                            " daemon restarts, or a reload changes its [job:cache] section;"
                            " to keep it, set it there")


@pytest_twisted.ensureDeferred
async def test_a_refused_module_or_key_says_what_would_do():
    """An unknown module names the nearest allowed one (or those allowed); a key, those allowed."""
    t = make()
    response, body = await t.call("POST", "/jobs", {"module": DEMO[:-1]})
    is_error(response, body, 404)
    assert body["error"] == (f"module {DEMO[:-1]!r}: no config section allows it (did you mean"
                             f" {DEMO!r}?)")
    response, body = await t.call("POST", "/jobs", {"module": "x"})
    assert body["error"] == f"module 'x': no config section allows it (allowed: {DEMO})"
    response, body = await t.call("POST", "/jobs", {"module": DEMO, "config": {"colour": "r"}})
    is_error(response, body, 403)
    assert body["error"] == (f"{DEMO} does not allow 'colour' to be set (it allows api_key,"
                             " greeting)")
    assert t.reactor.spawned == []


@pytest_twisted.ensureDeferred
async def test_forget_drops_an_ended_job_and_refuses_one_that_runs_or_is_declared():
    """POST /jobs/{guid}/forget: an ended job is gone (200, then 404); a running one 409."""
    t = make()
    running, ended = await t.launch(), await t.launch()
    t.init.stop(ended)
    t.reactor.spawned[-1].exit(0)
    response, body = await t.call("POST", f"/jobs/{running}/forget")
    is_error(response, body, 409)
    assert body["error"] == f"job {running} is starting: stop it first, then forget it"
    response, body = await t.call("POST", f"/jobs/{ended}/forget")
    assert (response.code, body["guid"], body["state"]) == (200, ended, "exited")
    assert set(t.init.workers) == {running}
    is_error(*await t.call("POST", f"/jobs/{ended}/forget"), 404)
    t.init.stop(running)
    t.reactor.spawned[0].exit(0)
    t.init.job(running).declared = True
    response, body = await t.call("POST", f"/jobs/{running}/forget")
    is_error(response, body, 409)
    assert "remove its [job:" in body["error"]


@pytest_twisted.ensureDeferred
async def test_patch_config_maps_a_push_failure_and_a_refusal(monkeypatch):
    """Not reached: 502, nothing changed; refused: 422 with the worker's reason."""
    t = make()
    guid = await t.launch()
    calls: list[tuple[str, dict[str, Any]]] = []

    def update_config(guid: str, changes: dict[str, Any]) -> Deferred[Any]:
        calls.append((guid, changes))
        return fail(ConfigPushFailed(guid, "HTTP 500", 500))

    monkeypatch.setattr(t.init, "update_config", update_config)
    response, body = await t.call("PATCH", f"/jobs/{guid}/config", {"greeting": "x"})
    is_error(response, body, 502)
    assert "nothing was changed" in body["error"] and calls == [(guid, {"greeting": "x"})]
    monkeypatch.setattr(t.init, "update_config",
                        lambda guid, changes: fail(ChangeRefused(guid, "ValueError: not x")))
    response, body = await t.call("PATCH", f"/jobs/{guid}/config", {"greeting": "x"})
    is_error(response, body, 422)
    assert body["error"] == f"job {guid} refused the change: ValueError: not x"


# -- web-hooks -------------------------------------------------------------------


class FakeHooks:
    """The HookDispatcher contract: add (which checks what it is given), list, remove."""

    def __init__(self) -> None:
        self.hooks: dict[str, dict[str, Any]] = {}

    def add(self, url: Any, events: Any) -> dict[str, Any]:
        url = check_url(url, [ip_network("127.0.0.1/32")])
        events = check_events(events)
        hook = {"id": f"h{len(self.hooks) + 1}", "url": url, "events": events,
                "secret": "hook-secret-value"}
        self.hooks[hook["id"]] = hook
        return dict(hook)

    def list(self) -> list[dict[str, Any]]:
        return [dict(hook) for hook in self.hooks.values()]

    def remove(self, hook_id: str) -> None:
        if hook_id not in self.hooks:
            raise UnknownHook(hook_id)
        del self.hooks[hook_id]


@pytest_twisted.ensureDeferred
async def test_hooks_add_list_remove():
    """POST /hooks 201 (secret shown once), GET /hooks without secrets, DELETE 204."""
    t = make(hooks=FakeHooks())
    response, hook = await t.call("POST", "/hooks", {"url": "http://127.0.0.1:9/h",
                                                     "events": ["ready"]})
    assert (response.code, hook["secret"], hook["events"]) == (201, "hook-secret-value",
                                                               ["ready"])
    _, hook2 = await t.call("POST", "/hooks", {"url": "http://127.0.0.1:9/all"})
    assert hook2["events"] == ["*"]
    response, body = await t.call("GET", "/hooks")
    assert response.code == 200
    assert [h["id"] for h in body["hooks"]] == [hook["id"], hook2["id"]]
    assert all("secret" not in h for h in body["hooks"])
    response, body = await t.call("DELETE", f"/hooks/{hook['id']}")
    assert (response.code, body) == (204, None)
    is_error(*await t.call("DELETE", f"/hooks/{hook['id']}"), 404)
    is_error(*await t.call("POST", "/hooks", {"url": "ftp://x"}), 400)
    is_error(*await t.call("POST", "/hooks", {"url": "http://10.1.2.3/h"}), 403)
    for body in ({"url": 5}, {"url": "http://127.0.0.1/h", "events": "ready"},
                 {"url": "http://127.0.0.1/h", "extra": 1}):
        is_error(*await t.call("POST", "/hooks", body), 400)
    is_error(*await t.call("GET", "/hooks", token="wrong"), 401)


@pytest_twisted.ensureDeferred
async def test_hooks_with_the_real_dispatcher_and_without_one():
    """The real HookDispatcher behind the routes; with no dispatcher, /hooks is 404."""
    t = make()
    t.api.hooks = HookDispatcher(t.reactor, _Health())
    response, hook = await t.call("POST", "/hooks", {"url": "http://127.0.0.1:9/h",
                                                     "events": ["ready", "exited"]})
    assert response.code == 201 and hook["secret"]
    _, body = await t.call("GET", "/hooks")
    assert [h["id"] for h in body["hooks"]] == [hook["id"]]
    assert hook["secret"].encode() not in t.bodies[-1]
    is_error(*await t.call("POST", "/hooks", {"url": "http://192.0.2.1/h",
                                               "events": ["ready"]}), 403)
    is_error(*await t.call("POST", "/hooks", {"url": "http://127.0.0.1/h",
                                               "events": []}), 400)
    for body, message in (
            ({"url": 5}, "url must be a non-empty string"),
            ({"url": ""}, "url must be a non-empty string"),
            ({"url": "http://127.0.0.1/h", "events": "ready"},
             "events must be a non-empty list of event names"),
            ({"url": "http://127.0.0.1/h", "events": [5]}, "unknown event a non-string")):
        response, answer = await t.call("POST", "/hooks", body)
        is_error(response, answer, 400)
        assert answer["error"].startswith(message)
    assert (await t.call("DELETE", f"/hooks/{hook['id']}"))[0].code == 204
    t.api.hooks = None
    is_error(*await t.call("GET", "/hooks"), 404)


STOPPING = {"error": "the daemon is stopping"}


@pytest_twisted.ensureDeferred
async def test_every_change_is_503_once_the_daemon_stops():
    """Once the initiator begins to stop, a launch, stop, restart, config change, reload
    and hook change each answer 503 with Retry-After, and change nothing."""
    t = make(reload=lambda: Reconciler(t.init, lambda: initiator_config()).reload())
    t.api.hooks = HookDispatcher(t.reactor, _Health())
    guid = await t.launch()
    _, hook = await t.call("POST", "/hooks", {"url": "http://127.0.0.1:9/h"})
    t.init.begin_stopping()
    for method, path, body in [
            ("POST", "/jobs", {"module": DEMO}), ("DELETE", f"/jobs/{guid}", None),
            ("POST", f"/jobs/{guid}/restart", None),
            ("PATCH", f"/jobs/{guid}/config", {"greeting": "hej"}), ("POST", "/reload", None),
            ("POST", "/hooks", {"url": "http://127.0.0.1:9/other"}),
            ("DELETE", f"/hooks/{hook['id']}", None)]:
        response, answer = await t.call(method, path, body)
        assert (response.code, answer) == (503, STOPPING), (method, path)
        assert response.headers.getRawHeaders(b"retry-after") == [b"5"]
    assert [(job.guid, job.state.value) for job in t.init.workers.values()] == [
        (guid, "starting")]
    assert [h["id"] for h in t.api.hooks.list()] == [hook["id"]]


@pytest_twisted.ensureDeferred
async def test_adding_or_removing_a_hook_on_a_closed_dispatcher_is_503():
    """A dispatcher closed (the daemon's last step in stopping) refuses changes: 503."""
    t = make()
    t.api.hooks = HookDispatcher(t.reactor, _Health())
    await t.api.hooks.close()
    for method, path, body in [("POST", "/hooks", {"url": "http://127.0.0.1:9/h"}),
                               ("DELETE", "/hooks/0123456789ab", None)]:
        response, answer = await t.call(method, path, body)
        assert (response.code, answer) == (503, STOPPING), (method, path)


# -- auth ---------------------------------------------------------------------------


ADMIN_ROUTES = [
    ("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/{guid}"), ("DELETE", "/jobs/{guid}"),
    ("GET", "/jobs/{guid}/logs"), ("PATCH", "/jobs/{guid}/config"), ("GET", "/hooks"),
    ("POST", "/hooks"), ("DELETE", "/hooks/h1"), ("GET", "/jobs/{guid}/proxy/anything"),
    ("POST", "/jobs/{guid}/proxy/echo"), ("POST", "/jobs/{guid}/forget"),
]


@pytest_twisted.ensureDeferred
async def test_admin_routes_refuse_no_wrong_or_job_token_alike():
    """Every admin route: no token, a wrong one, a job's, or not Bearer: the same 401."""
    t = make(hooks=FakeHooks())
    guid = await t.launch()
    job_token = t.init.job(guid).token
    bad: list[dict[bytes, list[bytes]]] = [
        {}, {b"Authorization": [b"Bearer wrong"]},
        {b"Authorization": [b"Bearer " + job_token.encode()]},
        {b"Authorization": [b"Basic " + TOKEN.encode()]},
        {b"Authorization": [b"Bearer " + TOKEN.encode() + b"x"]},
        {b"Authorization": [b"Bearer " + TOKEN[:-1].encode()]},
    ]
    for method, path in ADMIN_ROUTES:
        for headers in bad:
            response, body = await t.call(method, path.format(guid=guid), {"module": DEMO},
                                          token=None, headers=headers)
            assert (response.code, body) == (401, {"error": "unauthorized"}), (method, path)
            assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]
    assert len(t.reactor.spawned) == 1 and t.reactor.spawned[0].signals == []
    response, _ = await t.call("GET", "/jobs", headers={b"Authorization": [
        b"bearer  " + TOKEN.encode()]}, token=None)
    assert response.code == 200


# -- errors answered by the one table ---------------------------------------------------


def _one_port() -> Api:
    """An API whose child range is one port, free whatever else runs on this machine."""
    return make(low=23000, high=23000, in_use=lambda addr, port: False)


async def _ended(t: Api) -> str:
    """A job that ran on the only port and exited."""
    guid = await t.launch()
    t.init.stop(guid)
    t.reactor.spawned[-1].exit(0)
    assert t.init.job(guid).state == "exited"
    return guid


@pytest_twisted.ensureDeferred
async def test_restart_with_no_free_port_is_503():
    """Restart when another job holds the only port: 503, the job stays exited."""
    t = _one_port()
    first = await _ended(t)
    second = await t.launch()
    response, body = await t.call("POST", f"/jobs/{first}/restart")
    is_error(response, body, 503)
    assert "23000" not in body["error"]
    assert t.init.job(first).state == "exited" and t.init.job(second).state == "starting"
    assert len(t.reactor.spawned) == 2


@pytest_twisted.ensureDeferred
async def test_restart_when_the_spawn_fails_is_500_without_the_os_text():
    """A spawn the OS refuses: 500 with a fixed message; the cause is logged under the guid."""
    t = _one_port()
    guid = await _ended(t)
    t.reactor.fail_spawn = OSError(2, "No such file or directory")
    with capturedLogs() as events:
        response, body = await t.call("POST", f"/jobs/{guid}/restart")
    assert (response.code, body) == (500, {"error": "the worker process could not be started"})
    assert b"No such file" not in t.bodies[-1]
    logged = [e for e in events if "No such file" in e.get("error", "")]
    assert logged and all(e["guid"] == guid for e in logged)
    assert t.init.job(guid).state == "failed"


@pytest_twisted.ensureDeferred
async def test_a_guid_that_names_a_config_section_is_409_before_a_port_is_taken():
    """guid DEFAULT (or the initiator's or a module's section) is taken: 409, even with no
    free port."""
    t = _one_port()
    for guid in ("DEFAULT", "init", DEMO):
        is_error(*await t.call("POST", "/jobs", {"module": DEMO, "guid": guid}), 409)
    assert t.reactor.spawned == [] and t.init.workers == {}
    taken = await t.launch()
    response, body = await t.call("POST", "/jobs", {"module": DEMO, "guid": "DEFAULT"})
    is_error(response, body, 409)
    assert list(t.init.workers) == [taken] and len(t.reactor.spawned) == 1
    assert not t.init.cfg.has_option("DEFAULT", "listen_port")


@pytest_twisted.ensureDeferred
async def test_a_type_error_in_a_route_is_500_not_400(monkeypatch):
    """A TypeError is a bug, not the caller's fault: 500 "internal error", logged."""
    t = make(hooks=FakeHooks())
    guid = await t.launch()

    def broken(*args: Any) -> None:
        raise TypeError("restart() got an unexpected keyword argument")

    monkeypatch.setattr(t.init, "restart", broken)
    monkeypatch.setattr(t.api.hooks, "add", broken)
    with capturedLogs() as events:
        response, body = await t.call("POST", f"/jobs/{guid}/restart")
        assert (response.code, body) == (500, {"error": "internal error"})
        response, body = await t.call("POST", "/hooks", {"url": "http://127.0.0.1:9/h"})
        assert (response.code, body) == (500, {"error": "internal error"})
    failed = [e for e in events if "log_failure" in e]
    assert [e["log_failure"].type for e in failed] == [TypeError, TypeError]
    assert failed[0]["guid"] == guid


@pytest_twisted.ensureDeferred
async def test_the_hooks_app_answers_from_the_same_table():
    """/hooks is its own app, mounted: its 405, 413, 404 and 401 are the same JSON errors."""
    t = make(hooks=FakeHooks(), max_body=100)
    response, body = await t.call("PUT", "/hooks")
    is_error(response, body, 405)
    assert sorted(response.headers.getRawHeaders(b"allow")[0].decode().split(", ")) == [
        "GET", "HEAD", "POST"]
    is_error(*await t.call("POST", "/hooks", raw=b"x" * 101), 413)
    is_error(*await t.call("GET", "/hooks/h1/more"), 404)
    response, body = await t.call("GET", "/hooks", token="wrong")
    assert (response.code, body) == (401, {"error": "unauthorized"})
    assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]


# -- bad requests ---------------------------------------------------------------------


def _take_the_last_port(t: Api) -> None:
    Deferred.fromCoroutine(t.init.launch(DEMO))


def _free_the_last_port(t: Api) -> None:
    t.init.stop(list(t.init.workers)[-1])
    t.reactor.spawned[-1].exit(0)


def _fail_spawn(t: Api) -> None:
    t.reactor.fail_spawn = OSError(2, "No such file or directory")


def _spawn_again(t: Api) -> None:
    t.reactor.fail_spawn = None


LONG = "g" * 10_000
BAD_REQUESTS: list[tuple[str, str, str, Any, int]] = [
    # (what, method, path, body: bytes or JSON-able, status)
    ("malformed JSON", "POST", "/jobs", b'{"module": ', 400),
    ("not an object", "POST", "/jobs", [DEMO], 400),
    ("empty body", "POST", "/jobs", b"", 400),
    ("NaN", "POST", "/jobs", b'{"module": NaN}', 400),
    ("deeply nested", "POST", "/jobs", b"[" * 100_000 + b"]" * 100_000, 400),
    ("module not a string", "POST", "/jobs", {"module": 5}, 400),
    ("no module", "POST", "/jobs", {"session": "s"}, 400),
    ("session not a string", "POST", "/jobs", {"module": DEMO, "session": 5}, 400),
    ("session with $", "POST", "/jobs", {"module": DEMO, "session": "${init:token}"}, 400),
    ("session of two lines", "POST", "/jobs", {"module": DEMO, "session": "a\nb"}, 400),
    ("config not an object", "POST", "/jobs", {"module": DEMO, "config": ["a"]}, 400),
    ("config value a list", "POST", "/jobs", {"module": DEMO, "config": {"greeting": [1]}},
     400),
    ("guid malformed", "POST", "/jobs", {"module": DEMO, "guid": "../x"}, 400),
    ("guid null", "POST", "/jobs", {"module": DEMO, "guid": None}, 400),
    ("unknown field", "POST", "/jobs", {"module": DEMO, "command": "rm -rf /"}, 400),
    ("non-UTF-8 JSON", "POST", "/jobs", b'{"module": "\xff\xfe"}', 400),
    ("module not allowed", "POST", "/jobs", {"module": "json"}, 404),
    ("module not a name", "POST", "/jobs", {"module": "os; rm -rf /"}, 404),
    ("initiator's own section", "POST", "/jobs", {"module": "init"}, 404),
    ("override not allowed", "POST", "/jobs", {"module": DEMO, "config": {"token": "t"}},
     403),
    ("override not listed", "POST", "/jobs", {"module": DEMO, "config": {"other": "1"}}, 403),
    ("10 MiB body", "POST", "/jobs", b" " * (10 * 1024 * 1024), 413),
    ("unknown guid", "GET", "/jobs/no-such-job", None, 404),
    ("unknown guid, delete", "DELETE", "/jobs/no-such-job", None, 404),
    ("unknown guid, logs", "GET", "/jobs/no-such-job/proxy/logs", None, 404),
    ("unknown guid, relay", "GET", "/jobs/no-such-job/proxy/x", None, 404),
    ("10,000-char guid", "GET", f"/jobs/{LONG}", None, 404),
    ("10,000-char guid, relay", "POST", f"/jobs/{LONG}/echo", {}, 404),
    ("dot-dot", "GET", "/jobs/../../etc/passwd", None, 404),
    ("dot-dot at the top", "GET", "/../etc/passwd", None, 404),
    ("encoded dot-dot", "GET", "/jobs/%2e%2e/%2e%2e/etc/passwd", None, 404),
    ("dot-dot in a relay", "GET", "/jobs/{guid}/proxy/../../etc/passwd", None, 400),
    ("encoded dot-dot in a relay", "GET", "/jobs/{guid}/proxy/%2e%2e/%2E%2E/x", None, 400),
    ("non-UTF-8 URL", "GET", "/jobs/%ff%fe", None, 400),
    ("unknown route", "GET", "/nothing/here", None, 404),
    ("wrong method, /jobs", "PUT", "/jobs", None, 405),
    ("wrong method, /health", "POST", "/health", None, 405),
    ("wrong method, a job", "POST", "/jobs/{guid}", None, 405),
    ("wrong method, logs", "POST", "/jobs/{guid}/logs", None, 405),
    ("wrong method, events", "GET", "/jobs/{guid}/events", None, 405),
    ("wrong method, config", "GET", "/config/{guid}", None, 401),
    ("port range exhausted", "POST", "/jobs", {"module": DEMO}, 503),
    ("spawn failure", "POST", "/jobs", {"module": DEMO}, 500),
]
AROUND = {
    "port range exhausted": (_take_the_last_port, _free_the_last_port),
    "spawn failure": (_fail_spawn, _spawn_again),
}


@pytest_twisted.ensureDeferred
async def test_bad_requests_get_a_json_error_and_leave_the_api_working():
    """Each bad request: its status and {"error": str}; after them all, the API still works."""
    t = make(low=23000, high=23001)
    guid = await t.launch()
    jobs = dict(t.init.workers)
    with capturedLogs() as events:
        for what, method, path, body, status in BAD_REQUESTS:
            before, after = AROUND.get(what, (None, None))
            if before:
                before(t)
            raw = body if isinstance(body, bytes) else None
            response, answer = await t.call(method, path.format(guid=guid),
                                            None if raw is not None else body, raw=raw)
            assert response.code == status, (what, answer)
            is_error(response, answer, status)
            assert len(json.dumps(answer)) < 400, what
            if after:
                after(t)
    assert "Traceback" not in "".join(b.decode("utf-8", "replace") for b in t.bodies)
    spawn_logs = [e for e in events if e.get("error", "").startswith("could not start")]
    assert spawn_logs and "No such file" in spawn_logs[0]["error"]
    assert all(t.init.workers[g] is j for g, j in jobs.items())
    # each request that made a job either stopped it or could not spawn it
    assert all(j.state == ("failed" if j.last_error else "exited")
               for g, j in t.init.workers.items() if g not in jobs)
    response, body = await t.call("GET", "/health", token=None)
    assert (response.code, body["status"]) == (200, "ok")
    response, body = await t.call("GET", f"/jobs/{guid}")
    assert (response.code, body["guid"], body["state"]) == (200, guid, "starting")


@pytest_twisted.ensureDeferred
async def test_method_not_allowed_names_the_allowed_ones():
    """A 405 carries an Allow header."""
    t = make()
    response, _ = await t.call("PUT", "/jobs")
    assert sorted(response.headers.getRawHeaders(b"allow")[0].decode().split(", ")) == [
        "GET", "HEAD", "POST"]


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_is_500_logged_with_the_guid(monkeypatch):
    """A bug in a collaborator: 500 {"error": "internal error"}; the failure is logged."""
    t = make()
    guid = await t.launch()

    def broken(*args: Any) -> None:
        raise RuntimeError("boom with a detail that must not leak")

    monkeypatch.setattr(t.init, "worker_event", broken)
    with capturedLogs() as events:
        response, body = await t.call("POST", f"/jobs/{guid}/events", {"event": "x"},
                                      token=t.init.job(guid).token)
    assert (response.code, body) == (500, {"error": "internal error"})
    [failed] = [e for e in events if "log_failure" in e]
    assert failed["guid"] == guid
    assert failed["log_failure"].check(RuntimeError)


def test_bounded_request_drops_a_body_over_the_limit():
    """The site's request keeps no more than max_body bytes, declared or chunked."""
    channel = DummyChannel()
    channel.site = Site(Resource())
    channel.site.max_body = 10  # type: ignore[attr-defined]
    declared = _LimitedRequest(channel)
    declared.gotLength(11)
    declared.handleContentChunk(b"x" * 11)
    assert declared.too_large and declared.content.getvalue() == b""
    chunked = _LimitedRequest(channel)
    chunked.gotLength(None)
    chunked.handleContentChunk(b"x" * 6)
    assert not chunked.too_large
    chunked.handleContentChunk(b"x" * 6)
    assert chunked.too_large and chunked.content.read() == b""
    small = _LimitedRequest(channel)
    small.gotLength(10)
    small.handleContentChunk(b"y" * 10)
    small.content.seek(0)
    assert not small.too_large and small.content.read() == b"y" * 10


def test_site_is_quiet_and_shows_no_tracebacks():
    """site(): no start/stop chatter, no tracebacks, the bounded request, max_body set."""
    t = make(max_body=1234)
    site = t.api.site()
    assert site.noisy is False and site.displayTracebacks is False
    assert site.requestFactory is _LimitedRequest
    assert site.max_body == 1234  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        ControlAPI(t.init, "", t.reactor)


# -- the relay, with a fake HTTP client ----------------------------------------------


@attrs.define
class FakeTransport:
    stopped: bool = False

    def stopProducing(self) -> None:
        self.stopped = True


@attrs.define
class FakeResponse:
    """Just enough of an unbuffered treq response."""

    code: int
    headers: Headers
    chunks: list[bytes]
    finish: bool = True
    length: Any = UNKNOWN_LENGTH
    transport: FakeTransport = attrs.field(factory=FakeTransport)

    def deliverBody(self, protocol: Protocol) -> None:
        protocol.makeConnection(self.transport)  # type: ignore[arg-type]
        for chunk in self.chunks:
            if self.transport.stopped:
                return
            protocol.dataReceived(chunk)
        if self.finish and not self.transport.stopped:
            protocol.connectionLost(Failure(ResponseDone()))


@attrs.define
class FakeAgent:
    """
    An ``IAgent`` that records relayed requests (their body read from its
    producer) and answers with ``answer``: a response, an exception, or
    None for never (the relay's own timeout gives up on it).
    """

    answer: Any = None
    calls: list[dict[str, Any]] = attrs.field(factory=list)

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Deferred[Any]:
        written: list[bytes] = []
        data = None
        if bodyProducer is not None:
            sink = _Sink(written)
            bodyProducer.startProducing(sink)
            data = b"".join(written)
        self.calls.append({"method": method.decode(), "url": uri, "headers": headers,
                           "data": data})
        if isinstance(self.answer, Exception):
            return fail(self.answer)
        if self.answer is None:
            return Deferred()
        return succeed(self.answer)


@attrs.define
class _Sink:
    written: list[bytes]

    def write(self, data: bytes) -> None:
        self.written.append(data)


def answer(code: int = 200, body: bytes = b'{"ok": true}', ctype: bytes = b"application/json",
           **kwargs: Any) -> FakeResponse:
    headers = Headers({b"Content-Type": [ctype]} if ctype else {})
    return FakeResponse(code, headers, [body], **kwargs)


@pytest_twisted.ensureDeferred
async def test_relay_forwards_method_path_query_body_and_safe_headers():
    """The request goes to the job's port with its path, query, body and non-hop headers."""
    http = FakeAgent(answer(201, b'{"made": 1}', b"application/json; charset=utf-8"))
    t = make(relay_agent=http, relay_timeout=7.5)
    guid = await t.launch()
    port = t.init.job(guid).port
    headers = {
        b"Content-Type": [b"application/json"], b"X-Custom": [b"kept"],
        b"Connection": [b"keep-alive, X-Drop-Me"], b"X-Drop-Me": [b"1"],
        b"Keep-Alive": [b"timeout=5"], b"Proxy-Authorization": [b"Basic eA=="],
        b"TE": [b"trailers"], b"Upgrade": [b"websocket"], b"Cookie": [b"sid=1"],
    }
    response, body = await t.call("POST", f"/jobs/{guid}/proxy/items/a%20b/?x=1&y=%2F", {"n": 1},
                                  headers=headers)
    assert (response.code, body) == (201, {"made": 1})
    assert response.headers.getRawHeaders(b"content-type") == [
        b"application/json; charset=utf-8"]
    [call] = http.calls
    assert call["method"] == "POST"
    assert call["url"] == f"http://127.0.0.1:{port}/items/a%20b/?x=1&y=%2F".encode()
    assert call["data"] == b'{"n": 1}'
    sent = {name.lower(): values for name, values in call["headers"].getAllRawHeaders()}
    assert sent[b"x-custom"] == [b"kept"] and sent[b"cookie"] == [b"sid=1"]
    assert sent[b"content-type"] == [b"application/json"]
    for dropped in (b"host", b"connection", b"keep-alive", b"x-drop-me",
                    b"proxy-authorization", b"te", b"upgrade", b"content-length"):
        assert dropped not in sent, dropped
    # not the caller's token: the job's own, which a worker beyond loopback asks for
    assert sent[b"authorization"] == [f"Bearer {t.init.job(guid).token}".encode()]
    await t.call("GET", f"/jobs/{guid}/proxy/")
    assert http.calls[-1]["url"] == f"http://127.0.0.1:{port}/".encode()
    assert http.calls[-1]["data"] is None


@pytest_twisted.ensureDeferred
async def test_relay_passes_worker_errors_and_redirects_back_as_they_are():
    """
    A worker's 4xx/5xx or 3xx comes back with its body and content type; a
    Location off the worker's origin does not come back (502).
    """
    http = FakeAgent(answer(418, b"teapot", b"text/plain"))
    t = make(relay_agent=http)
    guid = await t.launch()
    response = await t.stub.get(f"{BASE}/jobs/{guid}/proxy/tea", headers={
        b"Authorization": [b"Bearer " + TOKEN.encode()]}, timeout=5, reactor=t.reactor)
    assert response.code == 418
    assert await response.content() == b"teapot"
    assert response.headers.getRawHeaders(b"content-type") == [b"text/plain"]
    for location, seen in [(b"/elsewhere?a=1", f"/jobs/{guid}/proxy/elsewhere?a=1".encode()),
                           (b"https://example.org/x", None)]:
        http.answer = answer(302, b"", b"")
        http.answer.headers.setRawHeaders(b"Location", [location])
        response = await t.stub.get(f"{BASE}/jobs/{guid}/proxy/moved", headers={
            b"Authorization": [b"Bearer " + TOKEN.encode()]}, allow_redirects=False,
            timeout=5, reactor=t.reactor)
        assert response.code == (302 if seen else 502)
        assert response.headers.getRawHeaders(b"location") == ([seen] if seen else None)


@pytest_twisted.ensureDeferred
async def test_relay_errors():
    """Refused: 502; no answer in time: 504; over-long answer: 502; job ended: 502."""
    http = FakeAgent(ConnectionRefusedError())
    t = make(relay_agent=http, relay_timeout=3)
    guid = await t.launch()
    is_error(*await t.call("GET", f"/jobs/{guid}/proxy/x"), 502)

    http.answer = None
    done = Deferred.fromCoroutine(t.call("GET", f"/jobs/{guid}/proxy/slow"))
    t.reactor.advance(2.9)
    t.stub.flush()
    assert not done.called
    t.reactor.advance(0.2)
    t.stub.flush()
    is_error(*await done, 504)

    http.answer = answer(200, b"partial", finish=False)
    done = Deferred.fromCoroutine(t.call("GET", f"/jobs/{guid}/proxy/trickle"))
    t.reactor.advance(3.1)
    t.stub.flush()
    is_error(*await done, 504)
    assert http.answer.transport.stopped

    t.api.relay.max_response = 10
    http.answer = answer(200, b"x" * 11)
    is_error(*await t.call("GET", f"/jobs/{guid}/proxy/big"), 502)
    assert http.answer.transport.stopped
    http.answer = answer(200, b"", length=11)
    is_error(*await t.call("GET", f"/jobs/{guid}/proxy/big"), 502)

    t.init.stop(guid)
    t.reactor.spawned[0].exit(0)
    calls = len(http.calls)
    response, body = await t.call("GET", f"/jobs/{guid}/proxy/x")
    is_error(response, body, 502)
    assert "exited" in body["error"] and len(http.calls) == calls


@pytest_twisted.ensureDeferred
async def test_relayed_requests_in_flight_share_one_clock():
    """Ten relayed requests waiting on a worker hold one timer between them, not one each;
    each is 504 once relay_timeout has passed (a tenth of it late at most)."""
    http = FakeAgent(None)
    t = make(relay_agent=http, relay_timeout=4)

    def timers() -> int:  # the daemon's, not the test client's own (Deferred.cancel)
        return sum("Deferred.cancel" not in repr(call) for call in t.reactor.getDelayedCalls())

    guid = await t.launch()
    before = timers()
    waiting = [Deferred.fromCoroutine(t.call("GET", f"/jobs/{guid}/proxy/{n}")) for n in range(10)]
    t.stub.flush()
    assert len(http.calls) == 10 and timers() == before + 1
    t.reactor.advance(3.5)
    t.stub.flush()
    assert not any(d.called for d in waiting)
    t.reactor.advance(0.9)
    t.stub.flush()
    for d in waiting:
        is_error(*await d, 504)


@pytest_twisted.ensureDeferred
async def test_relay_checks_come_before_the_worker_is_called():
    """Unknown job 404, no token 401, too big 413, dot segments 400: nothing is sent."""
    http = FakeAgent(answer())
    t = make(relay_agent=http, max_body=100)
    guid = await t.launch()
    is_error(*await t.call("POST", "/jobs/nope/x", {}), 404)
    is_error(*await t.call("POST", f"/jobs/{guid}/proxy/x", {}, token=None), 401)
    is_error(*await t.call("POST", f"/jobs/{guid}/proxy/x", raw=b"x" * 101), 413)
    is_error(*await t.call("GET", f"/jobs/{guid}/proxy/a/%2E/b"), 400)
    assert http.calls == []
    await t.call("POST", f"/jobs/{guid}/proxy/x", raw=b"x" * 100)
    assert http.calls[-1]["data"] == b"x" * 100


def test_unknown_job_message_is_short():
    """UnknownJob's message never holds a long guid whole."""
    assert len(str(UnknownJob("g" * 10_000))) < 100


@pytest_twisted.ensureDeferred
async def test_hook_events_are_checked_and_a_repeat_returns_the_existing_hook():
    """
    An event that can never happen is a 400 listing what is allowed; subscribing the
    same URL and events again is 200 with the existing hook, its secret not shown again.
    """
    t = make(hooks=HookDispatcher(FakeProcessReactor(), object()))
    url = "http://127.0.0.1:9/hook"
    response, body = await t.call("POST", "/hooks", {"url": url, "events": ["readyy"]})
    is_error(response, body, 400)
    assert "'readyy'" in body["error"] and "worker:NAME" in body["error"]
    assert "ready" in body["error"] and "backoff" in body["error"]
    response, first = await t.call("POST", "/hooks",
                                   {"url": url, "events": ["ready", "worker:notified"]})
    assert response.code == 201 and "secret" in first
    response, again = await t.call("POST", "/hooks",
                                   {"url": url, "events": ["worker:notified", "ready"]})
    assert response.code == 200 and again["id"] == first["id"] and "secret" not in again
    response, listed = await t.call("GET", "/hooks")
    assert [hook["id"] for hook in listed["hooks"]] == [first["id"]]


@pytest_twisted.ensureDeferred
async def test_a_guid_another_job_has_is_409_and_changes_nothing():
    """A launch with a guid that a job has (running or ended) is a conflict, not bad input;
    the job that has it is left as it was."""
    t = make()
    guid = await t.launch(guid="mine")
    before = t.init.job(guid).as_json()
    response, body = await t.call("POST", "/jobs", {"module": DEMO, "guid": "mine"})
    is_error(response, body, 409)
    assert "taken" in body["error"]
    assert t.init.job(guid).as_json() == before and len(t.reactor.spawned) == 1


@pytest_twisted.ensureDeferred
async def test_a_hook_with_null_events_is_400_and_none_is_made():
    """events may be left out (every event) but not null: as the description says, an array."""
    hooks = HookDispatcher(FakeProcessReactor(), None, allow=[ip_network("127.0.0.0/8")])
    t = make(hooks=hooks)
    url = "http://127.0.0.1:9/hook"
    is_error(*await t.call("POST", "/hooks", {"url": url, "events": None}), 400)
    assert hooks.list() == []
    response, body = await t.call("POST", "/hooks", {"url": url})
    assert response.code == 201 and body["events"] == ["*"]


@pytest_twisted.ensureDeferred
async def test_a_malformed_last_event_id_query_is_400_even_beside_a_good_header():
    """?last_event_id= is checked whenever it is given: the header wins, but a malformed
    query is not passed over in silence."""
    t = make()
    good = [f"{t.api.journal.run}-0".encode()]
    response, body = await t.call("GET", "/events?last_event_id=nonsense",
                                  headers={b"Last-Event-ID": good})
    is_error(response, body, 400)
