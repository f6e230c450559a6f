"""
GET /openapi.json: built from the routing tables (it can't drift from them), and a
schemathesis run from it against a live daemon, over every operation (the relay and the
event stream included, the job-token routes with a job's token), finds nothing: no 5xx, no
undocumented status or content type, no answer off its schema, no schema-valid body
refused and no schema-violating one taken.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.utils import getProcessOutputAndValue

from turberfield_twisted.cli.locate import read_api
from turberfield_twisted.contract import bearer_header
from turberfield_twisted.http import openapi
from turberfield_twisted.http.api import served_routes
from turberfield_twisted.http.router import Router
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of

ST = str(Path(sys.executable).parent / "st")
DEMO = "turberfield_twisted.demo.hello"


def the_routes() -> list[tuple[str, str]]:
    return served_routes()


def test_every_route_is_described_and_every_description_has_a_route():
    """The document covers exactly the routes the apps serve."""
    document = openapi.document(the_routes())
    described = {(method.upper(), path) for path, item in document["paths"].items()
                 for method in item}
    served = {(method, path) for method, path in the_routes() if method != "*"}
    assert served <= described
    assert document["openapi"] == "3.2.0"
    assert all(operation.get("responses") for item in document["paths"].values()
               for operation in item.values())


def test_a_route_with_no_description_or_a_description_with_no_route_is_refused():
    """Add a route and forget its description, or describe a gone route: an error."""

    class More:
        app = Router()

        @app.route("/undescribed", methods=["GET"])
        def undescribed(self, request: Any) -> bytes:
            return b""

    with pytest.raises(openapi.UndocumentedRoute, match="/undescribed"):
        openapi.document([*the_routes(), *openapi.routes(More.app)])
    with pytest.raises(openapi.UndocumentedRoute, match=r"no route for.*/health"):
        openapi.document([route for route in the_routes() if route[1] != "/health"])


@asynccontextmanager
async def daemon_in_process(reactor: Any, where: Path, config: str) -> AsyncIterator[Any]:
    """
    The whole daemon (``tap.makeService``) in this process, on a free loopback port, with
    ``config``: yields its Initiator (its URL and admin token are in its state dir). Stopped
    after, with every job; SIGHUP's handler is put back.
    """
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.tap import Options, makeService

    (where / "proactor.cfg").write_text(config)
    with free_ports(1) as api:  # its port, held until it has stopped
        options = Options()
        options.parseOptions(["--config", str(where / "proactor.cfg"), "--state-dir",
                              str(where / "state"), "--listen",
                              f"tcp:{api.low}:interface=127.0.0.1"])
        hangup = signal.getsignal(signal.SIGHUP)
        top = makeService(options)
        top.privilegedStartService()
        top.startService()
        try:
            yield next(service for service in top if isinstance(service, Initiator))
        finally:
            await top.stopService()
            signal.signal(signal.SIGHUP, hangup)


def st_config(url: str, token: str, guid: str, job_token: str, relayed: str,
              examples: int = 12, seconds: int = 60) -> str:
    """
    Schemathesis's config: every check, each token for its security scheme, ``guid`` (the
    job whose token that is) for the job-token routes' {guid}, ``relayed`` (a job nothing
    else stops) for the relay's, the others' from the links (POST /jobs' answer); the relay checked
    for its status and content type only (what comes back is the worker's), the event
    stream read to its first event, ``?wait=`` not waited.
    503 is expected (the child port range is small: a launch past it finds no port). A
    job is not deleted by DELETE /jobs/{guid} but stopped (it stays, exited), so the check
    that a deleted resource is gone does not apply under /jobs/{guid}.
    ``token`` is the one of the role the run is for (a lower one is answered 403, which
    every operation that needs a role documents).
    """
    return textwrap.dedent(f"""
        workers = 1
        max-time = {seconds}
        request-timeout = 20

        [auth.openapi.token]
        bearer = "{token}"

        [auth.openapi.job]
        bearer = "{job_token}"

        [generation]
        max-examples = {examples}

        [checks]
        enabled = true
        not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

        [[operations]]
        include-name = ["GET /config/{{guid}}", "POST /jobs/{{guid}}/events",
                        "POST /jobs/{{guid}}/listening"]
        parameters = {{ "path.guid" = "{guid}" }}

        [[operations]]
        include-path-regex = "/proxy"
        parameters = {{ "path.guid" = "{relayed}" }}
        checks.enabled = false
        checks.status_code_conformance.enabled = true
        checks.content_type_conformance.enabled = true

        [[operations]]
        include-path-regex = "^/jobs/[{{]guid[}}]"
        checks.use_after_free.enabled = false

        [[operations]]
        include-name = "GET /events"
        max-stream-events = 1
        request-timeout = 5

        [[operations]]
        include-name = "GET /jobs/{{guid}}"
        parameters = {{ "query.timeout" = 0 }}
        """)


@pytest.mark.timeout(300)  # three runs: an admin's (60 s), an operator's and a viewer's (20 s each)
@pytest_twisted.ensureDeferred
async def test_schemathesis_finds_nothing_on_any_operation(reactor, tmp_path):
    """
    From the served document, against the whole daemon with real workers: every check on
    every operation (the relay: status and content type), bounded in examples and time; run
    with an admin token, then (fewer examples) an operator's and a viewer's. The admin
    token's rotation is left out (it would end the run's own token; tested end to end).
    """
    with free_ports() as ports:
        config = (f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
                  f"child_port_max = {ports.high}\nready_timeout = 30\n"
                  f"hook_allow = ::1/128\nauth_failures = 1000000\n")
        async with daemon_in_process(reactor, tmp_path, config) as initiator:
            url, admin = read_api(tmp_path / "state")
            response = await treq.get(url + "/openapi.json", timeout=10, reactor=reactor)
            assert response.code == 200  # no token needed
            document = json.loads(await response.content())
            assert "/jobs/{guid}/proxy/{path}" in document["paths"]
            for guid in ("target", "relayed"):
                await initiator.launch(DEMO, guid=guid)
                await initiator.ready(guid, 30)
            job_token = initiator.job("target").token
            runs = [("admin", admin, 12, 60)]
            for role in ("operator", "viewer"):
                made = await treq.post(url + "/tokens", json={"name": role, "role": role},
                                       headers=bearer_header(admin), timeout=10,
                                       reactor=reactor)
                runs.append((role, json.loads(await made.content())["secret"], 2, 20))
            for role, token, examples, seconds in runs:
                settings = tmp_path / f"schemathesis-{role}.toml"
                settings.touch(mode=0o600)
                settings.write_text(st_config(url, token, "target", job_token, "relayed",
                                              examples, seconds))
                env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8",
                       "HOME": str(tmp_path), "SCHEMATHESIS_HOOKS": ""}
                out, err, code = await getProcessOutputAndValue(ST, [
                    "--config-file", str(settings), "run", url + "/openapi.json",
                    "--exclude-path", "/tokens/admin/rotate", "--no-color", "--report", "har",
                    "--report-dir", str(tmp_path / f"report-{role}"),
                ], env=env, path=str(tmp_path), reactor=reactor)
                text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
                (tmp_path / f"st-output-{role}.txt").write_text(text)
                assert code == 0, f"{role}: " + text[-6000:]
                assert " passed" in text and "failed" not in text.split("Test cases:")[-1]
    assert children_of(os.getpid()) == []
