"""The JSON router base: one table of errors to statuses, applied to every app."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from turberfield_twisted.errors import (
    ApiError,
    BadGuid,
    BadOverride,
    ConfigPushFailed,
    Invalid,
    MethodNotAllowed,
    NoFreePort,
    OverrideNotAllowed,
    RouteNotFound,
    SpawnFailed,
    UnknownJob,
    UnknownModule,
)
from turberfield_twisted.hooks.dispatcher import HookRejected, UnknownHook
from turberfield_twisted.hooks.rules import HookNotAllowed
from turberfield_twisted.http.relay import RelayError
from turberfield_twisted.http.statuses import STATUSES, BodyTooLarge, status_of
from turberfield_twisted.http.web import JsonRouter, Unauthorized

EXPECTED: list[tuple[Exception, int]] = [
    (Invalid("x"), 400),
    (BadGuid("x"), 400),
    (BadOverride("x"), 400),
    (HookRejected("x"), 400),
    (Unauthorized(), 401),
    (OverrideNotAllowed("x"), 403),
    (HookNotAllowed("x"), 403),
    (UnknownJob("g"), 404),
    (UnknownModule("m"), 404),
    (UnknownHook("h"), 404),
    (RouteNotFound(), 404),
    (RouteNotFound("only with a trailing slash"), 404),
    (MethodNotAllowed(["GET"]), 405),
    (BodyTooLarge(), 413),
    (SpawnFailed("could not start m: No such file"), 500),
    (ConfigPushFailed("g", "HTTP 500", 500), 502),
    (RelayError(504, "slow"), 504),
    (NoFreePort("init", 1, 2), 503),
    (ApiError(501, "no"), 501),
    (TypeError("a bug"), 500),
    (ValueError("not a validation error"), 500),
    (KeyError("k"), 500),
    (RuntimeError("x"), 500),
]


@pytest.mark.parametrize(("exc", "status"), EXPECTED, ids=lambda v: type(v).__name__)
def test_each_error_has_its_status(exc: Exception, status: int) -> None:
    """Every domain error maps to one status; anything else is 500."""
    assert status_of(exc) == status


def test_the_most_specific_class_along_the_mro_wins() -> None:
    """A subclass inherits its nearest named ancestor's status, whatever else it is."""

    class NoSuchThing(UnknownJob):
        pass

    class Crowded(NoFreePort, Invalid):
        pass

    assert status_of(NoSuchThing("g")) == 404
    assert status_of(Crowded("init", 1, 2)) == 503
    assert status_of(HookNotAllowed("x")) == 403  # though it is an Invalid too
    assert isinstance(HookRejected("x"), Invalid)


def test_only_validation_errors_are_400() -> None:
    """400 is Invalid's alone; each status is an HTTP error status."""
    assert [cls for cls, status in STATUSES.items() if status == 400] == [Invalid]
    assert all(400 <= status <= 599 for status in STATUSES.values())


class _Raiser:
    """Routes that raise what they are told, on a JsonRouter app."""

    app = JsonRouter()

    def __init__(self, exc: Exception):
        self.exc = exc

    @app.route("/jobs/<guid>/go", methods=["POST"])
    def go(self, request: Any, guid: str) -> bytes:
        raise self.exc

    @app.route("/plain", methods=["GET"])
    def plain(self, request: Any) -> bytes:
        raise self.exc


async def _call(exc: Exception, method: str = "POST",
                path: str = "/jobs/job-1/go") -> tuple[Any, Any, list[Any]]:
    stub = StubTreq(_Raiser(exc).app.resource())
    with capturedLogs() as events:
        response = await stub.request(method, "http://127.0.0.1" + path, timeout=5,
                                      reactor=Clock())
        body = json.loads(await response.content())
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    return response, body, list(events)


@pytest_twisted.ensureDeferred
async def test_a_type_error_is_500_internal_error_and_logged_with_the_guid() -> None:
    """A bug (TypeError) is not the caller's fault: 500, no detail, the failure logged."""
    response, body, events = await _call(TypeError("detail that must not leak"))
    assert (response.code, body) == (500, {"error": "internal error"})
    [failed] = [e for e in events if "log_failure" in e]
    assert failed["log_failure"].check(TypeError) and failed["guid"] == "job-1"
    response, body, events = await _call(TypeError("x"), "GET", "/plain")
    assert (response.code, body) == (500, {"error": "internal error"})
    [failed] = [e for e in events if "log_failure" in e]
    assert failed["guid"] is None


@pytest_twisted.ensureDeferred
async def test_a_failed_spawn_says_so_and_logs_the_cause() -> None:
    """
    SpawnFailed: 500 with a fixed message, never the OS text. The lifecycle logs the
    cause under the job's guid where the spawn fails (test_launch), so this adds no line.
    """
    response, body, events = await _call(SpawnFailed("could not start m: No such file"))
    assert (response.code, body) == (500, {"error": "the worker process could not be started"})
    assert not any("No such file" in formatEvent(e) or "log_failure" in e for e in events)


@pytest_twisted.ensureDeferred
async def test_no_message_quotes_a_port_range_or_a_workers_answer() -> None:
    """NoFreePort and ConfigPushFailed answer fixed messages; the details are logged."""
    response, body, events = await _call(NoFreePort("init", 23000, 23009))
    assert response.code == 503 and "23000" not in body["error"]
    assert any("23000-23009" in e.get("error", "") for e in events)
    response, body, events = await _call(ConfigPushFailed("job-1", "worker says s3cr3t", 500))
    assert response.code == 502 and "s3cr3t" not in body["error"]
    assert "nothing was changed" in body["error"]
    assert any(e.get("guid") == "job-1" for e in events)


@pytest_twisted.ensureDeferred
async def test_headers_of_401_405_and_a_routes_own_answer() -> None:
    """401 asks for a bearer token, 405 names the allowed methods, ApiError keeps its own."""
    response, body, _ = await _call(Unauthorized())
    assert (response.code, body) == (401, {"error": "unauthorized"})
    assert response.headers.getRawHeaders(b"www-authenticate") == [b"Bearer"]
    response, body, _ = await _call(MethodNotAllowed(["GET", "HEAD"]))
    assert (response.code, body) == (405, {"error": "method not allowed"})
    assert response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
    response, body, _ = await _call(ApiError(501, "not here", {"X-Why": "because"}))
    assert (response.code, body) == (501, {"error": "not here"})
    assert response.headers.getRawHeaders(b"x-why") == [b"because"]
    response, body, _ = await _call(RelayError(504, "job g did not answer in time"))
    assert (response.code, body) == (504, {"error": "job g did not answer in time"})


@pytest_twisted.ensureDeferred
async def test_routing_errors_are_json_too() -> None:
    """No route: 404; a route with other methods: 405 with Allow; both JSON."""
    response, body, _ = await _call(TypeError(), "GET", "/nothing")
    assert (response.code, body) == (404, {"error": "not found"})
    response, body, _ = await _call(TypeError(), "PUT", "/plain")
    assert (response.code, body) == (405, {"error": "method not allowed"})
    assert sorted(response.headers.getRawHeaders(b"allow")[0].split(b", ")) == [
        b"GET", b"HEAD"]


@pytest.mark.parametrize(("header", "expected", "ok"), [
    (b"Bearer tok", "tok", True), (b"bearer  tok ", b"tok", True), (b"Basic tok", "tok", False),
    (None, "tok", False), (b"Bearer ", "", False), (b"Bearer tok", "", False),
])
def test_authorized_reads_the_bearer_token_of_a_request(header, expected, ok):
    """contract.authorized: the request's bearer token is the expected one (none expected: no)."""
    from twisted.web.test.requesthelper import DummyRequest

    from turberfield_twisted.contract import authorized

    request = DummyRequest([b""])
    if header is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [header])
    assert authorized(request, expected) is ok
