"""
The ``/services`` routes, their relay and the ``proactor`` service commands,
against an Initiator and its ControlAPI served in this process on
127.0.0.1, with real demo workers behind them.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from typing import Any

import pytest_twisted
import treq
from test_cli import proactor
from twisted.internet.endpoints import TCP4ServerEndpoint

from turberfield_twisted import Initiator
from turberfield_twisted.contract import API_FILE, TOKEN_FILE
from turberfield_twisted.daemon.statedir import write_private
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.http import openapi
from turberfield_twisted.http.api import ControlAPI, served_routes
from turberfield_twisted.http.openapi_services import SERVICE_SCHEMAS
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone
from turberfield_twisted.testing.subscriber import Subscriber, listen

DEMO = "turberfield_twisted.demo.hello"
BROKEN = "turberfield_twisted.testing.broken"
TOKEN = "admin-token-for-service-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Served:
    """An Initiator and its API in this process; ``ports``: child ports, then service ports."""

    def __init__(self, init: Initiator, url: str, state: Any, ports: Any, hooks: Any):
        self.init, self.url, self.state, self.hooks = init, url, state, hooks
        self.service_ports = list(range(ports.high - 4, ports.high + 1))

    async def call(self, reactor: Any, method: str, path: str,
                   body: Any = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": AUTH, "timeout": 20, "reactor": reactor}
        if body is not None:
            kwargs["json"] = body
        response = await treq.request(method, self.url + path, **kwargs)
        text = await response.content()
        return response.code, json.loads(text) if text.strip() else None


@pytest_twisted.async_yield_fixture
async def served(reactor, tmp_path):
    ports = free_ports(20)
    init = Initiator(None, guid="init", cfg=initiator_config(
        ports.low, ports.high - 5, ready_timeout=30, max_instances=8,
        extra=f"[{BROKEN}]\noverridable = greeting\n"), reactor=reactor)
    hooks = HookDispatcher(reactor, init.http)
    init.subscribe(hooks.publish)
    port = await TCP4ServerEndpoint(reactor, ports.high - 5, interface="127.0.0.1").listen(
        ControlAPI(init, TOKEN, reactor, hooks=hooks).site())
    init.listening("127.0.0.1", port.getHost().port)
    state = tmp_path / "state"
    write_private(state / API_FILE, f"http://127.0.0.1:{port.getHost().port}\n")
    write_private(state / TOKEN_FILE, TOKEN + "\n")
    init.startService()
    try:
        yield Served(init, f"http://127.0.0.1:{port.getHost().port}", state, ports, hooks)
    finally:
        pids = [job.pid for job in init.workers.values() if job.pid]
        await init.stopService()
        await wait_gone(reactor, pids)
        await port.stopListening()
        await hooks.close()
        ports.release()
        assert children_of(os.getpid()) == []


def test_the_services_routes_are_described_and_every_description_has_a_route():
    """/services and below are in the OpenAPI document, each with its operation and role."""
    document = openapi.document(served_routes())
    assert {"/services", "/services/{name}", "/services/{name}/rollout",
            "/services/{name}/proxy/{path}"} <= set(document["paths"])
    assert set(document["paths"]["/services/{name}"]) == {"get", "patch", "delete"}
    assert set(document["components"]["schemas"]) >= set(SERVICE_SCHEMAS)
    roles = {(method, path): operation["x-role"]
             for path, item in document["paths"].items() if path.startswith("/services")
             for method, operation in item.items()}
    assert roles[("get", "/services")] == roles[("get", "/services/{name}")] == "viewer"
    assert {roles[("post", "/services")], roles[("patch", "/services/{name}")],
            roles[("post", "/services/{name}/rollout")],
            roles[("get", "/services/{name}/proxy/{path}")]} == {"operator"}


@pytest_twisted.ensureDeferred
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(served, reactor):
    """
    instances 0 or negative (400) or over max_instances (403), an address another process
    holds, a name that is a config section's or no listen for a module that runs here (409),
    a malformed listen or a spread with a listen (400), scaling a
    service that does not exist (404): each a 4xx with a JSON error saying why; no
    service, job or socket left.
    """
    port = served.service_ports[0]
    holder = socket.create_server(("127.0.0.1", served.service_ports[1]))
    base = {"name": "web", "module": DEMO, "listen": str(port)}
    try:
        cases = [
            ({**base, "instances": 0}, 400, "instances must be a whole number of 1 or more"),
            ({**base, "instances": -2}, 400, "instances must be"),
            ({**base, "instances": 9}, 403, "at most 8 (the daemon's max_instances)"),
            ({**base, "instances": "2"}, 400, "instances must be a whole number"),
            ({**base, "listen": str(served.service_ports[1])}, 409,
             "another process listens on it"),
            ({**base, "name": "init"}, 409, "is taken: a config section has it"),
            ({**base, "listen": "localhost:80"}, 400, "listen must be"),
            ({**base, "module": "no.such.module"}, 404, "no.such.module"),
            ({"name": "web", "module": DEMO}, 409, "listen is required"),
            ({**base, "spread": "nodes"}, 400, "spread applies only to a service of a module"),
            ({**base, "config": {"secret": "x"}}, 403, "does not allow 'secret'"),
        ]
        for body, status, says in cases:
            code, answer = await served.call(reactor, "POST", "/services", body)
            assert (code, says in answer["error"]) == (status, True), (body, answer)
        code, answer = await served.call(reactor, "PATCH", "/services/nope", {"instances": 2})
        assert (code, answer) == (404, {"error": "no service 'nope'"})
        assert (await served.call(reactor, "GET", "/services")) == (200, {"services": []})
        assert served.init.workers == {}
        socket.create_server(("127.0.0.1", port)).close()  # not left bound
    finally:
        holder.close()


@pytest_twisted.ensureDeferred
async def test_make_scale_relay_roll_out_and_remove_through_the_api(served, reactor):
    """
    POST makes a service whose instances answer on its address; PATCH scales it (0 is
    refused, nothing changed); the relay spreads over its ready instances; a rollout
    replaces them all and a second one meanwhile is 409; events say so, as do hooks;
    DELETE drains them and frees the address.
    """
    subscriber = Subscriber()
    receiver = await listen(reactor, subscriber, served.service_ports[4])
    try:
        await _through_the_api(served, reactor, subscriber)
    finally:
        await receiver.down()


async def _through_the_api(served: Served, reactor: Any, subscriber: Subscriber) -> None:
    port = served.service_ports[0]
    hook = served.hooks.add(f"http://127.0.0.1:{served.service_ports[4]}/hook", ["service:*"])
    code, made = await served.call(reactor, "POST", "/services",
                                   {"name": "web", "module": DEMO, "listen": f"127.0.0.1:{port}",
                                    "instances": 2, "config": {"greeting": "hi"}})
    assert code == 201 and made["listen"] == f"127.0.0.1:{port}"
    assert [m["guid"] for m in made["members"]] == ["web.1", "web.2"]
    code, view = await served.call(reactor, "GET", "/services/web?wait=ready&timeout=30")
    assert (code, view["ready"], view["instances"]) == (200, 2, 2)
    answer = await treq.get(f"http://127.0.0.1:{port}/", timeout=10, reactor=reactor)
    body = json.loads(await answer.content())
    assert body["guid"] in ("web.1", "web.2") and body["config"]["greeting"] == "hi"
    assert served.init.job("web.1").service == "web"
    await _roles_and_scopes(served, reactor)

    code, answer = await served.call(reactor, "PATCH", "/services/web", {"instances": 0})
    assert code == 400 and "instances must be" in answer["error"]
    code, view = await served.call(reactor, "PATCH", "/services/web", {"instances": 3})
    assert code == 200 and view["instances"] == 3
    code, view = await served.call(reactor, "GET", "/services/web?wait=ready&timeout=30")
    assert view["ready"] == 3

    seen: Counter[str] = Counter()
    for _ in range(9):
        response = await treq.get(served.url + "/services/web/proxy/", headers=AUTH,
                                  timeout=10, reactor=reactor)
        seen[json.loads(await response.content())["guid"]] += 1
    assert set(seen) == {"web.1", "web.2", "web.3"}  # least in flight: one after another
    response = await treq.get(served.url + "/services/web/proxy/", timeout=10, reactor=reactor)
    assert response.code == 401

    code, view = await served.call(reactor, "POST", "/services/web/rollout",
                                   {"config": {"greeting": "hej"}})
    assert code == 202 and view["rollout"]["state"] == "running"
    code, answer = await served.call(reactor, "POST", "/services/web/rollout", {})
    assert (code, "is running" in answer["error"]) == (409, True)
    code, view = await served.call(reactor, "GET", "/services/web?wait=rollout&timeout=60")
    assert view["rollout"]["state"] == "done" and view["config"] == {"greeting": "hej"}
    assert [m["guid"] for m in view["members"]] == ["web.4", "web.5", "web.6"]
    answer = await treq.get(f"http://127.0.0.1:{port}/", timeout=10, reactor=reactor)
    assert json.loads(await answer.content())["config"]["greeting"] == "hej"

    code, view = await served.call(reactor, "DELETE", "/services/web")
    assert code == 202
    pids = [served.init.job(g).pid for g in ("web.4", "web.5", "web.6")]
    await wait_gone(reactor, [pid for pid in pids if pid])
    assert (await served.call(reactor, "GET", "/services/web"))[0] == 404
    await subscriber.arrived(5).addTimeout(20, reactor)
    assert [event for _, event in subscriber.events()] == [
        "created", "scaled", "rollout_started", "rollout_done", "removed"]
    assert subscriber.all_signed(hook["secret"])
    socket.create_server(("127.0.0.1", port)).close()  # freed once its instances ended


async def _roles_and_scopes(served: Served, reactor: Any) -> None:
    """
    A viewer reads services but may not change or relay to one (403 naming the role); a
    token limited to other modules sees neither the service nor its instances (403 by
    name); one limited to the service's name may act on it and its instances.
    """

    async def as_token(name: str, role: str, scope: list[str]) -> dict[str, str]:
        code, made = await served.call(reactor, "POST", "/tokens",
                                       {"name": name, "role": role, "scope": scope})
        assert code == 201, made
        return {"Authorization": f"Bearer {made['secret']}"}

    async def call(headers: dict[str, str], method: str, path: str,
                   body: Any = None) -> tuple[int, Any]:
        response = await treq.request(method, served.url + path, headers=headers,
                                      json=body, timeout=10, reactor=reactor)
        text = await response.content()
        return response.code, json.loads(text) if text.strip() else None

    viewer = await as_token("viewer", "viewer", [])
    code, listed = await call(viewer, "GET", "/services")
    assert (code, [s["name"] for s in listed["services"]]) == (200, ["web"])
    for method, path in (("POST", "/services/web/rollout"), ("PATCH", "/services/web"),
                         ("GET", "/services/web/proxy/")):
        code, answer = await call(viewer, method, path, {"instances": 2}
                                  if method == "PATCH" else None)
        assert (code, "needs the operator role" in answer["error"]) == (403, True), answer
    elsewhere = await as_token("elsewhere", "operator", ["other.module"])
    assert await call(elsewhere, "GET", "/services") == (200, {"services": []})
    code, listed = await call(elsewhere, "GET", "/jobs")
    assert listed["jobs"] == []
    for method, path in (("GET", "/services/web"), ("GET", "/services/web/proxy/"),
                         ("GET", "/jobs/web.1")):
        assert (await call(elsewhere, method, path))[0] == 403, path
    by_name = await as_token("web-only", "operator", ["web"])
    assert (await call(by_name, "GET", "/services/web"))[0] == 200
    assert (await call(by_name, "GET", "/jobs/web.1"))[0] == 200
    code, relayed = await call(by_name, "GET", "/services/web/proxy/")
    assert code == 200 and relayed["guid"] in ("web.1", "web.2")


@pytest_twisted.ensureDeferred
async def test_the_service_commands(served, reactor):
    """service create/ls/show/rm, scale and rollout, as a user runs them; a failed
    rollout is exit 1 with its reason."""
    at = ["--state-dir", str(served.state), "--timeout", "45"]
    port = served.service_ports[0]
    code, out, err = await proactor(reactor, *at, "service", "create", "web", DEMO,
                                    "--listen", str(port), "--instances", "2", "--wait",
                                    timeout=60)
    assert (code, err) == (0, ""), err
    assert f"listen           127.0.0.1:{port}" in out and "ready            2" in out
    code, out, _ = await proactor(reactor, *at, "service", "ls")
    assert out.splitlines()[0].split() == ["NAME", "MODULE", "LISTEN", "READY", "ROLLOUT"]
    assert out.splitlines()[1].split() == ["web", DEMO, f"127.0.0.1:{port}", "2/2", "-"]
    code, out, err = await proactor(reactor, *at, "scale", "web", "1", "--wait", timeout=60)
    assert code == 0 and "instances        1" in out
    code, out, err = await proactor(reactor, *at, "rollout", "web", "--set", "greeting=hej",
                                    "--wait", timeout=60)
    assert (code, err) == (0, "") and "rollout          done 1/1" in out
    assert "config.greeting  hej" in out
    code, out, err = await proactor(reactor, *at, "rollout", "web", "--module",
                                    BROKEN, "--wait", timeout=60)
    assert code == 1 and "the rollout failed and was rolled back" in err, err
    assert "ImportError: broken: this module fails at import" in err
    code, out, err = await proactor(reactor, *at, "scale", "nope", "2")
    assert (code, err) == (1, "proactor: error: no service 'nope' (HTTP 404)\n")
    code, out, _ = await proactor(reactor, *at, "service", "rm", "web")
    assert (code, out) == (0, "web removed\n")
