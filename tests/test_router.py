"""
The control API's router (:mod:`turberfield_twisted.http.router`, :mod:`.rules`):
Klein's decorator surface, werkzeug's matching, no Klein or werkzeug loaded.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from turberfield_twisted.errors import MethodNotAllowed, RouteNotFound
from turberfield_twisted.http.router import Router
from turberfield_twisted.http.rules import Rule, RuleTable


def _table(*routes: tuple[str, list[str] | None]) -> RuleTable:
    table = RuleTable()
    for at, (url, methods) in enumerate(routes):
        table.add(Rule.make(url, methods, f"r{at}", 0, lambda *a: None))
    return table


ROUTES = _table(("/jobs", ["GET", "POST"]), ("/jobs/<guid>", ["GET", "DELETE"]),
                ("/jobs/<guid>/restart", ["POST"]), ("/jobs/<guid>/proxy/<rest:path>", None),
                ("/ui/", ["GET"]), ("/ui/<path:__rest__>", ["GET"]), ("/tokens/<name>", ["DELETE"]),
                ("/tokens/admin/rotate", ["POST"]))

#: (method, path) -> the rule it matches and its values, or the error it raises
#: (with the Allow list of a 405): what the werkzeug-routed daemon answered.
MATCHES: list[tuple[str, str, Any]] = [
    ("GET", "/jobs", ("/jobs", {})),
    ("HEAD", "/jobs", ("/jobs", {})),  # GET's rule answers HEAD
    ("GET", "/jobs/x", ("/jobs/<guid>", {"guid": "x"})),
    ("GET", "//jobs", ("/jobs", {})),  # leading slashes are one
    ("GET", "///jobs", ("/jobs", {})),
    ("GET", "/jobs/", RouteNotFound),  # strict slashes: a route /x asked as /x/
    ("GET", "/ui", RouteNotFound),  # and a route /x/ asked as /x
    ("GET", "/jobs/x/", RouteNotFound),
    ("GET", "/jobs//x", RouteNotFound),  # matches only once slashes are merged
    ("PUT", "/jobs//x", ("DELETE", "GET", "HEAD")),  # ... with another method: 405
    ("GET", "/jobs/x//restart", ("POST",)),
    ("POST", "/jobs/x//restart", RouteNotFound),
    ("PUT", "/jobs", ("GET", "HEAD", "POST")),
    ("OPTIONS", "/jobs", ("GET", "HEAD", "POST")),
    ("GET", "/jobs/x/restart", ("POST",)),
    ("PATCH", "/jobs/x/proxy/", ("/jobs/<guid>/proxy/<rest:path>", {"guid": "x", "path": ""})),
    ("GET", "/jobs/x/proxy/a//b", ("/jobs/<guid>/proxy/<rest:path>",
                                   {"guid": "x", "path": "a//b"})),
    ("GET", "/ui/", ("/ui/", {})),
    ("GET", "/ui/a/b.js", ("/ui/<path:__rest__>", {"__rest__": "a/b.js"})),
    ("GET", "/ui//", RouteNotFound),  # path: at least one character, not a slash first
    ("POST", "/tokens/admin/rotate", ("/tokens/admin/rotate", {})),  # fixed segments win
    ("DELETE", "/tokens/admin", ("/tokens/<name>", {"name": "admin"})),
    ("GET", "/nope", RouteNotFound),
    ("GET", "", RouteNotFound),
]


@pytest.mark.parametrize(("method", "path", "expected"), MATCHES)
def test_paths_match_as_werkzeug_matched_them(method: str, path: str, expected: Any) -> None:
    """One segment per <name>, strict and merged slashes 404, another method's path 405."""
    if expected is RouteNotFound:
        with pytest.raises(RouteNotFound):
            ROUTES.match(path, method)
    elif isinstance(expected[0], str) and expected[0].startswith("/"):
        rule, values = ROUTES.match(path, method)
        assert (rule.rule, values) == expected
    else:
        with pytest.raises(MethodNotAllowed) as info:
            ROUTES.match(path, method)
        assert info.value.allowed == expected


def test_an_unknown_converter_is_refused_when_the_route_is_declared() -> None:
    """A route names only converters the table knows."""
    with pytest.raises(ValueError, match="no converter 'int'"):
        Rule.make("/x/<int:n>", None, "x", 1, lambda: None)


class _Owner:
    """Routes that use ``self``, one of each kind of answer."""

    app = Router()

    def __init__(self, name: str, pending: Deferred[bytes] | None = None):
        self.name = name
        self.pending = pending
        self.failures: list[tuple[Any, Failure]] = []

    @app.route("/name", methods=["GET"])
    def get_name(self, request: Any) -> str:
        return self.name

    @app.route("/later", methods=["GET"])
    def later(self, request: Any) -> Deferred[bytes]:
        assert self.pending is not None
        return self.pending

    @app.route("/async/<word>", methods=["GET"])
    async def echo(self, request: Any, word: str) -> bytes:
        return (await succeed(word)).encode()

    @app.route("/nothing", methods=["POST"])
    def nothing(self, request: Any) -> None:
        request.setResponseCode(204)

    @app.route("/mount", branch=True)
    def mount(self, request: Any) -> Resource:
        seen = (b"/".join(request.prepath), b"/".join(request.postpath))

        class Rest(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                return b"%s|%s" % seen

        return Rest()

    @app.route("/broken", methods=["GET"])
    def broken(self, request: Any) -> bytes:
        raise KeyError("k")

    @app.handle_errors(KeyError)
    def not_here(self, request: Any, failure: Failure) -> bytes:
        self.failures.append((request, failure))
        request.setResponseCode(410)
        return b"gone: " + self.name.encode()

    @app.handle_errors(RouteNotFound, MethodNotAllowed)
    def routing(self, request: Any, failure: Failure) -> bytes:
        request.setResponseCode(404 if failure.check(RouteNotFound) else 405)
        return type(failure.value).__name__.encode()


async def _get(owner: _Owner, path: str, method: str = "GET") -> tuple[int, bytes]:
    stub = StubTreq(owner.app.resource())
    response = await stub.request(method, "http://127.0.0.1" + path, timeout=5,
                                  reactor=Clock())
    return response.code, await response.content()


@pytest_twisted.ensureDeferred
async def test_each_instance_answers_with_its_own_self() -> None:
    """The class's router is bound per instance: a handler's ``self`` is its owner."""
    one, two = _Owner("one"), _Owner("two")
    assert await _get(one, "/name") == (200, b"one")
    assert await _get(two, "/name") == (200, b"two")
    assert one.app is one.app and _Owner.app is _Owner.__dict__["app"]
    assert [rule.rule for rule in one.app.iter_rules()] == [
        rule.rule for rule in _Owner.app.iter_rules()]


@pytest_twisted.ensureDeferred
async def test_deferreds_coroutines_and_none_are_answers() -> None:
    """A Deferred's or a coroutine's result is written when it comes; None writes nothing."""
    pending: Deferred[bytes] = Deferred()
    owner = _Owner("o", pending)
    stub = StubTreq(owner.app.resource())
    later = stub.get("http://127.0.0.1/later", timeout=5, reactor=Clock())
    pending.callback(b"at last")  # after the route has returned its Deferred
    stub.flush()
    response = await later
    assert (response.code, await response.content()) == (200, b"at last")
    assert await _get(owner, "/async/caf%C3%A9") == (200, "café".encode())
    assert await _get(owner, "/nothing", "POST") == (204, b"")


@pytest_twisted.ensureDeferred
async def test_a_branch_route_hands_the_rest_of_the_path_to_the_resource_it_returns() -> None:
    """``branch=True``: its path and below; the route's segments move to ``prepath``."""
    owner = _Owner("o")
    assert await _get(owner, "/mount") == (200, b"mount|")
    assert await _get(owner, "/mount/a/b") == (200, b"mount|a/b")
    assert await _get(owner, "/mount/a/b", "DELETE") == (200, b"mount|a/b")


@pytest_twisted.ensureDeferred
async def test_errors_go_to_the_handler_for_their_type_with_self_request_and_failure() -> None:
    """``handle_errors(T)``: called as (self, request, failure); routing errors too."""
    owner = _Owner("o")
    assert await _get(owner, "/broken") == (410, b"gone: o")
    [(request, failure)] = owner.failures
    assert failure.check(KeyError) and request.method == b"GET"
    assert await _get(owner, "/nope") == (404, b"RouteNotFound")
    assert await _get(owner, "/name", "POST") == (405, b"MethodNotAllowed")


def test_a_client_that_goes_away_cancels_the_handlers_deferred() -> None:
    """A disconnect cancels the route's Deferred (a long-poll stops waiting), writing nothing."""
    cancelled: list[Deferred[bytes]] = []
    owner = _Owner("o", Deferred(cancelled.append))
    request = DummyRequest([b"later"])
    request.method = b"GET"
    request.render(owner.app.resource())
    assert not cancelled
    request.processingFailed(Failure(ConnectionDone("the client went away")))
    assert len(cancelled) == 1 and request.written == [] and not request.finished


@pytest.mark.parametrize("path", [b"name", b"later", b"broken", b"nope"])
def test_an_answered_request_is_freed_by_reference_counting(path: bytes) -> None:
    """
    Once answered (at once, later, by an error handler, as not found), nothing
    of the routing holds the request in a cycle: it is freed as soon as the
    last reference goes, not at the garbage collector's next full pass (a
    burst of long-polls otherwise grows the daemon's heap for good).
    """
    pending: Deferred[bytes] = Deferred()
    owner = _Owner("o", pending)
    gc.disable()
    try:
        request = DummyRequest([path])
        request.method = b"GET"
        request.render(owner.app.resource())
        pending.callback(b"at last")
        assert request.finished
        owner.failures.clear()
        gone = weakref.ref(request)
        del request
        assert gone() is None
    finally:
        gc.enable()


def test_importing_the_control_api_loads_neither_klein_nor_werkzeug() -> None:
    """A fresh interpreter that imports the API (and the daemon's tap) has no klein, werkzeug."""
    code = ("from twisted.internet import asyncioreactor; asyncioreactor.install()\n"
            "import json, sys\n"
            "import turberfield_twisted.http.api, turberfield_twisted.tap\n"
            "import turberfield_twisted.tap_services, turberfield_twisted.proactord\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('klein', 'werkzeug', 'markupsafe')"
            " or m in ('turberfield_twisted.worker.app', 'turberfield_twisted.worker.runtime'))))")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout) == []
