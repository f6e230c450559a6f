"""
What names may look like (config.names): each pattern takes a whole string, so a
trailing newline is refused, in the patterns themselves and through the real API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import endpoints
from twisted.web.client import Agent, HTTPConnectionPool

from turberfield_twisted.config import names
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.testing.procs import wait_gone

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "names-admin-token-abcdefghijklmnopqrstuvwxyz-0123456"

#: A name each pattern takes, by the pattern's name in config.names.
SAMPLES = {
    "GUID": "abc",
    "SESSION": "x",
    "EVENT_NAME": "done",
    "KEY": "greeting",
    "MODULE": DEMO,
    "STEP": "12.0",
    "SERVICE_NAME": "web",
}


def test_every_pattern_refuses_a_trailing_newline():
    """Every Name of config.names takes its sample and refuses it with a newline before or after."""
    found = {key: value for key, value in vars(names).items() if isinstance(value, names.Name)}
    assert set(found) == set(SAMPLES), "a new pattern needs a sample here"
    for key, pattern in found.items():
        sample = SAMPLES[key]
        assert pattern.accepts(sample), key
        assert not pattern.accepts(sample + "\n"), key
        assert not pattern.accepts("\n" + sample), key
        assert not pattern.accepts(sample.encode()), key  # a string, nothing else
        assert pattern.pattern == f"^{pattern.core}$"


def test_a_name_has_no_match_to_misuse():
    """A Name offers only the whole-string test: there is no re-style match to call by mistake."""
    assert not hasattr(names.GUID, "match")
    assert not hasattr(names.GUID, "search")


@pytest_twisted.async_yield_fixture
async def api(reactor: Any, start_initiator: Any, take_ports: Any) -> Any:
    """A real initiator (the demo, greeting overridable) behind a ControlAPI on a real port."""
    running = await start_initiator({DEMO: {"greeting": "hello", "overridable": "greeting"}},
                                    reactor=reactor)
    hooks = HookDispatcher(reactor, running.init.http)
    served = ControlAPI(running.init, TOKEN, reactor, hooks=hooks)
    port = await endpoints.TCP4ServerEndpoint(reactor, take_ports(1).low,
                                              interface="127.0.0.1").listen(served.site())
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    base = f"http://127.0.0.1:{port.getHost().port}"

    async def call(method: str, path: str, body: Any, token: str = TOKEN) -> tuple[int, Any]:
        response = await http.request(
            method, base + path, data=json.dumps(body).encode(),
            headers={b"Authorization": [f"Bearer {token}".encode()],
                     b"Content-Type": [b"application/json"]},
            timeout=30, reactor=reactor)
        return response.code, json.loads(await response.content())

    call.init = running.init  # type: ignore[attr-defined]
    yield call
    await port.stopListening()
    await served.close()
    await hooks.close()


@pytest_twisted.ensureDeferred
async def test_names_with_a_trailing_newline_are_refused_by_the_api(api, reactor):
    """
    Through the real API, each name with a trailing newline is refused with a
    specific error, and nothing is launched for it.
    """
    code, job = await api("POST", "/jobs", {"module": DEMO})
    assert code == 201, job
    guid = job["guid"]
    init = api.init
    await init.ready(guid, timeout=30)
    token, port, pid = init.job(guid).token, init.job(guid).port, init.job(guid).pid
    table: list[tuple[str, str, Any, str, int]] = [
        ("POST", "/jobs", {"module": DEMO, "guid": "abc\n"}, TOKEN, 400),
        ("POST", "/jobs", {"module": DEMO, "session": "x\n"}, TOKEN, 400),
        ("POST", "/jobs", {"module": DEMO, "config": {"greeting\n": "hi"}}, TOKEN, 400),
        ("POST", "/jobs", {"module": DEMO + "\n"}, TOKEN, 404),
        ("POST", "/hooks", {"url": "http://127.0.0.1:9/h", "events": ["worker:done\n"]},
         TOKEN, 400),
        ("POST", f"/jobs/{guid}/events", {"event": "done\n"}, token, 400),
        ("POST", f"/jobs/{guid}/listening", {"host": "127.0.0.1", "port": port,
                                            "step": "12.0\n"}, token, 400),
    ]
    seen = []
    for method, path, body, caller, _ in table:
        code, answer = await api(method, path, body, caller)
        assert isinstance(answer.get("error"), str), answer
        seen.append(code)
    assert seen == [status for *_, status in table]
    assert list(init.workers) == [guid]
    await init.stop(guid)
    await wait_gone(reactor, [pid])


@pytest.mark.parametrize("text", ["abc", "a.b-c_d", "A" * 64])
def test_good_guids_still_pass(text):
    """A guid of 1 to 64 letters, digits, _ . - (a letter or digit first) is a guid."""
    assert names.GUID.accepts(text)
