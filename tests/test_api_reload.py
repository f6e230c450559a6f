"""POST /reload and the store's failures, over StubTreq."""

from __future__ import annotations

import pytest_twisted
from test_api import DEMO, is_error, make
from twisted.logger import capturedLogs, formatEvent

from turberfield_twisted.daemon.reconcile import ConfigRefused, Reloaded
from turberfield_twisted.errors import StoreFailed


@pytest_twisted.ensureDeferred
async def test_reload_answers_what_it_did():
    """200 with started, stopped, restarted, unchanged and restart_needed."""
    t = make(reload=lambda: Reloaded(started=("a",), unchanged=("b", "c")))
    response, body = await t.call("POST", "/reload")
    assert (response.code, body) == (200, {"started": ["a"], "stopped": [], "restarted": [],
                                           "unchanged": ["b", "c"], "restart_needed": [],
                                           "warnings": []})


@pytest_twisted.ensureDeferred
async def test_reload_needs_the_admin_token_and_a_reloader():
    """401 without the token; 404 when the initiator has no config files to read again."""
    t = make(reload=lambda: Reloaded())
    response, body = await t.call("POST", "/reload", token=None)
    is_error(response, body, 401)
    t = make()
    response, body = await t.call("POST", "/reload")
    is_error(response, body, 404)


@pytest_twisted.ensureDeferred
async def test_a_bad_file_is_a_400_naming_file_line_and_key():
    """The ConfigError's text (file, line, key; never a value) is the answer, and logged."""

    def bad() -> Reloaded:
        raise ConfigRefused("key 'requires' in [job:x] lists a job that no [job:NAME] section"
                            " declares", "my.cfg", 7)

    t = make(reload=bad)
    with capturedLogs() as events:
        response, body = await t.call("POST", "/reload")
    is_error(response, body, 400)
    assert body["error"].startswith("my.cfg, line 7: key 'requires' in [job:x]")
    assert any("my.cfg, line 7" in formatEvent(e) for e in events)


@pytest_twisted.ensureDeferred
async def test_a_store_that_cannot_be_written_is_a_503_logged_with_its_reason():
    """StoreFailed: 503 with a fixed message; the reason (a path, SQLite's words) is logged."""

    class Failing:
        """A store that keeps jobs until ``failing``."""

        failing = False

        def put_job(self, record):
            if self.failing:
                raise StoreFailed("the store /x/proactor.db could not keep a job: disk I/O error")

        def forget_job(self, guid):
            pass

    store = Failing()
    t = make(store=store)
    guid = await t.launch()
    store.failing = True
    with capturedLogs() as events:
        response, body = await t.call("DELETE", f"/jobs/{guid}")
        launched, answer = await t.call("POST", "/jobs", {"module": DEMO})
    is_error(response, body, 503)
    assert "/x/proactor.db" not in body["error"] and "state store" in body["error"]
    assert t.init.job(guid).state.value == "starting"  # not stopped: nothing changed
    is_error(launched, answer, 503)
    assert sum("disk I/O error" in formatEvent(e) for e in events) == 2
