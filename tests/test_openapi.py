"""
GET /openapi.json: built from the routing tables (it can't drift from them), and a
schemathesis run from it against a live daemon finds no 5xx and no mismatch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from klein import Klein
from twisted.internet.utils import getProcessOutputAndValue

from turberfield_twisted.http import openapi
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.http.hooks import HooksAPI
from turberfield_twisted.testing.procs import children_of

ST = str(Path(sys.executable).parent / "st")


def the_routes() -> list[tuple[str, str]]:
    return [*openapi.routes(ControlAPI.app), *openapi.routes(HooksAPI.app, "/hooks")]


def test_every_route_is_described_and_every_description_has_a_route():
    """The document covers exactly the routes the apps serve."""
    document = openapi.document(the_routes())
    described = {(method.upper(), path) for path, item in document["paths"].items()
                 for method in item}
    served = {(method, path) for method, path in the_routes() if method != "*"}
    assert served <= described
    assert document["openapi"] == "3.1.0"
    assert all(operation.get("responses") for item in document["paths"].values()
               for operation in item.values())


def test_a_route_with_no_description_or_a_description_with_no_route_is_refused():
    """Add a route and forget its description, or describe a gone route: an error."""

    class More:
        app = Klein()

        @app.route("/undescribed", methods=["GET"])
        def undescribed(self, request: Any) -> bytes:
            return b""

    with pytest.raises(openapi.UndocumentedRoute, match="/undescribed"):
        openapi.document([*the_routes(), *openapi.routes(More.app)])
    with pytest.raises(openapi.UndocumentedRoute, match=r"no route for.*/health"):
        openapi.document([route for route in the_routes() if route[1] != "/health"])


@pytest_twisted.ensureDeferred
async def test_schemathesis_finds_no_server_error_and_no_mismatch(daemons, reactor, tmp_path):
    """
    From the served document, against a live daemon with real workers: no 5xx, no
    undocumented status or content type, every answer matching its schema. Bounded in
    examples and time. Left out: GET /events (a stream that never ends) and the relay
    under /jobs/{guid}/proxy/ (its answers are the worker's; 502/504 when a worker is
    down or slow are its contract, tested in test_api_relay.py).
    """
    daemon = await daemons(26601, 26999)
    response = await treq.get(daemon.url + "/openapi.json", timeout=10, reactor=reactor)
    assert response.code == 200  # no token needed
    document = json.loads(await response.content())
    assert "/jobs/{guid}/proxy/{path}" in document["paths"]
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(tmp_path),
           "SCHEMATHESIS_HOOKS": ""}
    out, _, code = await getProcessOutputAndValue(ST, [
        "run", daemon.url + "/openapi.json",
        "--header", f"Authorization: Bearer {daemon.token}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--exclude-path", "/events", "--exclude-path-regex", "/proxy",
        "--max-examples", "15", "--max-time", "45", "--request-timeout", "65",
        "--workers", "1", "--no-color",
    ], env=env, path=str(tmp_path), reactor=reactor)
    text = out.decode("utf-8", "replace")
    assert code == 0, text[-4000:]
    assert " passed" in text and "failed" not in text.split("Test cases:")[-1]
    assert daemon.pid is not None and children_of(os.getpid())  # the daemon still runs
