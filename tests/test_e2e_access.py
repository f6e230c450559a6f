"""
Access end to end against a real daemon (``twistd -n proactor``) and real workers: every
operation of the served OpenAPI document answers viewer, operator and admin tokens exactly
as its role allows; the admin token rotates without a restart; a revoked token's event
stream ends; the audit trail names tokens and never holds a secret; a run of wrong tokens
from one address is throttled while another address is not slowed.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.contract import bearer_header
from turberfield_twisted.testing.configs import DEMO
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of
from turberfield_twisted.worker.parent import make_http

PROACTOR = str(Path(sys.executable).parent / "proactor")

log = Logger()

ROLES = ("viewer", "operator", "admin")


async def start(reactor: Any, where: Path, ports: Any, extra: str = "") -> Daemon:
    config = where / "proactor.cfg"
    config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
                      f"child_port_max = {ports.high}\n{extra}[{DEMO}]\n")
    daemon = Daemon.start(reactor, where / "state", config=config, cwd=where)
    await daemon.listening.addTimeout(30, reactor)
    return daemon


async def call(reactor: Any, daemon: Daemon, method: str, path: str, token: str,
               body: Any = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": bearer_header(token)}
    if body is not None:
        kwargs["json"] = body
    response = await treq.request(method, daemon.url + path, timeout=15, reactor=reactor,
                                  **kwargs)
    raw = await response.content()
    try:
        return response.code, json.loads(raw) if raw else None
    except ValueError:
        return response.code, raw


async def tokens_of_each_role(reactor: Any, daemon: Daemon) -> dict[str, str]:
    made = {}
    for role in ROLES:
        code, body = await call(reactor, daemon, "POST", "/tokens", daemon.token,
                                {"name": f"t-{role}", "role": role})
        assert code == 201, body
        made[role] = body["secret"]
    return made


#: What a path parameter is filled with, per operation: a job that exists, else a name.
def fill(path: str, guid: str) -> str:
    return (path.replace("{guid}", guid).replace("{hook_id}", "nohook")
            .replace("{name}", "nosuch").replace("{path}", "x"))


@pytest_twisted.ensureDeferred
async def test_every_operation_answers_each_role_as_the_document_says(reactor, tmp_path):
    """
    Built from the served document: a role below an operation's x-role gets 403 naming it;
    the role and those above are never refused (401/403); public operations need no token.
    """
    with free_ports() as ports:
        daemon = await start(reactor, tmp_path, ports)
        try:
            tokens = await tokens_of_each_role(reactor, daemon)
            code, document = await call(reactor, daemon, "GET", "/openapi.json", "")
            assert code == 200
            code, job = await call(reactor, daemon, "POST", "/jobs", daemon.token,
                                   {"module": DEMO, "guid": "target"})
            assert code == 201, job
            checked = 0
            for path, item in sorted(document["paths"].items()):
                for method, operation in sorted(item.items()):
                    security = operation["security"]
                    if method.upper() in ("TRACE", "OPTIONS", "HEAD"):
                        continue
                    url = fill(path, "target")
                    if path == "/events":
                        url += "?logs=nosuch"  # a 404 once admitted: no stream to hold
                    if not security or "job" in security[0]:
                        assert "x-role" not in operation
                        if not security:
                            code, _ = await call(reactor, daemon, method.upper(), url, "")
                            assert code not in (401, 403), (method, path)
                        continue
                    needed = operation["x-role"]
                    assert security == [{"token": [needed]}]
                    for role in ROLES:
                        body = {} if method in ("post", "patch", "put") else None
                        if path == "/tokens/admin/rotate":
                            body = {"grace": 600}  # the admin token stays good
                        code, answer = await call(reactor, daemon, method.upper(), url,
                                                  tokens[role], body)
                        if ROLES.index(role) < ROLES.index(needed):
                            assert code == 403, (method, path, role, code, answer)
                            assert answer["error"].endswith(f"needs the {needed} role")
                        else:
                            assert code not in (401, 403), (method, path, role, code, answer)
                        checked += 1
                    code, _ = await call(reactor, daemon, method.upper(), url, "wrong")
                    assert code == 401
            assert checked >= 3 * 25
        finally:
            await daemon.stop(reactor)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_rotation_revocation_and_the_audit_trail_end_to_end(reactor, tmp_path):
    """
    Rotation needs no restart and leaves running jobs be: the old admin token fails at once
    (no grace), or once its grace is over; a revoked token's event stream ends within a
    second; the audit trail holds a refused and an accepted change by token name, and no
    secret is in the store, the log or any answer.
    """
    answers: list[bytes] = []
    with free_ports() as ports:
        daemon = await start(reactor, tmp_path, ports, "auth_failures = 1000\n")
        state = tmp_path / "state"
        try:
            secrets = [daemon.token]
            tokens = await tokens_of_each_role(reactor, daemon)
            secrets += tokens.values()
            code, job = await call(reactor, daemon, "POST", "/jobs", tokens["operator"],
                                   {"module": DEMO, "guid": "kept"})
            answers.append(json.dumps(job).encode())
            code, ready = await call(reactor, daemon, "GET", "/jobs/kept?wait=ready&timeout=30",
                                     tokens["viewer"])
            assert ready["state"] == "ready"
            refused, said = await call(reactor, daemon, "POST", "/jobs", tokens["viewer"],
                                       {"module": DEMO})
            assert refused == 403 and said == {"error": "POST /jobs needs the operator role"}
            # A viewer's stream, closed within a second of its token's revocation.
            http, pool = make_http(reactor, persistent=False)
            viewer = ControlClient(http, daemon.url, tokens["viewer"], reactor)
            seen: list[Any] = []
            opened: defer.Deferred[None] = defer.Deferred()

            def heard(event: Any) -> None:
                seen.append(event)
                if event.event == "open" and not opened.called:
                    opened.callback(None)

            following = defer.Deferred.fromCoroutine(viewer.events(heard))
            await opened.addTimeout(10, reactor)
            code, _ = await call(reactor, daemon, "DELETE", "/tokens/t-viewer", daemon.token)
            assert code == 204
            await following.addTimeout(1, reactor)
            code, _ = await call(reactor, daemon, "GET", "/jobs", tokens["viewer"])
            assert code == 401
            # Rotation, no grace: the old admin token fails at once; the new one is in the file.
            old = daemon.token
            code, rotated = await call(reactor, daemon, "POST", "/tokens/admin/rotate", old)
            assert code == 200
            new = (state / "admin.token").read_text().strip()
            assert rotated["secret"] == new != old
            secrets.append(new)
            assert (await call(reactor, daemon, "GET", "/jobs", old))[0] == 401
            code, jobs = await call(reactor, daemon, "GET", "/jobs", new)
            assert code == 200 and jobs["jobs"][0]["pid"] == ready["pid"]
            assert jobs["jobs"][0]["state"] == "ready"
            # With grace: the old one works until its grace is over, then never again.
            code, again = await call(reactor, daemon, "POST", "/tokens/admin/rotate", new,
                                     {"grace": 1})
            secrets.append(again["secret"])
            assert (await call(reactor, daemon, "GET", "/jobs", new))[0] == 200
            await daemon.logged("grace period is over").addTimeout(10, reactor)
            assert (await call(reactor, daemon, "GET", "/jobs", new))[0] == 401
            code, trail = await call(reactor, daemon, "GET", "/audit", again["secret"])
            assert code == 200
            kept = [(r["token"], r["method"], r["path"], r["status"]) for r in trail["records"]]
            assert ("t-viewer", "POST", "/jobs", 403) in kept
            assert ("t-operator", "POST", "/jobs", 201) in kept
            assert ("admin", "DELETE", "/tokens/t-viewer", 204) in kept
            assert ("-", "GET", "/jobs", 401) in kept
            answers += [json.dumps(x).encode() for x in (said, jobs, trail, rotated, again)]
            code, text = await cli(reactor, state, "audit")  # the token the file now holds
            assert code == 0 and "t-operator" in text and "403" in text, text
            answers.append(text.encode())
            await pool.closeCachedConnections()
        finally:
            await daemon.stop(reactor)
    kept_bytes = b"".join(path.read_bytes() for path in state.iterdir() if path.is_file()
                          and path.name != "admin.token")
    logged = "\n".join(daemon.lines).encode()
    shown_once = {rotated["secret"], again["secret"]}
    for secret in secrets:
        assert secret.encode() not in kept_bytes, "a secret is in the state dir"
        assert secret.encode() not in logged, "a secret is in the log"
        if secret not in shown_once:
            assert not [a for a in answers if secret.encode() in a], "a secret in an answer"
    assert children_of(os.getpid()) == []


async def cli(reactor: Any, state: Path, *args: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(state.parent)}
    out, err, code = await getProcessOutputAndValue(
        PROACTOR, ["--state-dir", str(state), *args], env=env, reactor=reactor)
    return code, (out + err).decode("utf-8", "replace")


@implementer(IAgentEndpointFactory)
class From:
    """Connections to the daemon from a given loopback source address."""

    def __init__(self, reactor: Any, source: str):
        self.reactor, self.source = reactor, source

    def endpointForURI(self, uri: Any) -> Any:
        return TCP4ClientEndpoint(self.reactor, uri.host.decode(), uri.port, timeout=10,
                                  bindAddress=(self.source, 0))


@pytest_twisted.ensureDeferred
async def test_wrong_tokens_from_one_address_are_throttled_another_is_not_slowed(
        reactor, tmp_path):
    """
    1,000 wrong tokens from 127.0.0.1: 429s with Retry-After; a right token from 127.0.0.2
    meanwhile is answered (the ratio of its times, during to before, is logged).
    """
    with free_ports() as ports:
        daemon = await start(reactor, tmp_path, ports)
        try:
            right = Agent.usingEndpointFactory(reactor, From(reactor, "127.0.0.2"),
                                               pool=HTTPConnectionPool(reactor))
            wrong = Agent.usingEndpointFactory(reactor, From(reactor, "127.0.0.1"),
                                               pool=HTTPConnectionPool(reactor))

            async def timed() -> float:
                began = time.perf_counter()
                response = await treq.get(daemon.url + "/jobs", headers=daemon.headers(),
                                          agent=right, timeout=10, reactor=reactor)
                await response.content()
                assert response.code == 200
                return time.perf_counter() - began

            before = [await timed() for _ in range(50)]
            codes: dict[int, int] = {}
            retry_after: set[bytes] = set()

            async def attack(count: int) -> None:
                for _ in range(count):
                    response = await treq.get(daemon.url + "/jobs", agent=wrong,
                                              headers=bearer_header("wrong"), timeout=10,
                                              reactor=reactor)
                    await response.content()
                    codes[response.code] = codes.get(response.code, 0) + 1
                    retry_after.update(response.headers.getRawHeaders(b"retry-after", []))

            attacks = [defer.Deferred.fromCoroutine(attack(250)) for _ in range(4)]
            during = []
            while not all(d.called for d in attacks):
                during.append(await timed())
            await defer.gatherResults(attacks)
            assert sum(codes.values()) == 1000 and codes.get(429, 0) > 0, codes
            assert set(codes) <= {401, 429} and retry_after
            ratio = statistics.median(during) / statistics.median(before)
            log.info("throttle: {codes}; a right token from 127.0.0.2: median {before:.2f} ms"
                     " before, {during:.2f} ms during ({n} requests): ratio {ratio:.2f}",
                     codes=codes, before=1000 * statistics.median(before),
                     during=1000 * statistics.median(during), n=len(during), ratio=ratio)
            (tmp_path / "throttle.txt").write_text(f"{codes} ratio {ratio:.2f}\n")
            print(f"throttle: {codes}; median right-token time ratio during/before: {ratio:.2f}")
        finally:
            await daemon.stop(reactor)
