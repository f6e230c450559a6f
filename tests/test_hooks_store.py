"""
Web-hooks kept in the store: subscriptions and undelivered records survive a
restart of the dispatcher; records go out again in order and seq goes on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_hooks import URL, FakeHTTP, record
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.errors import StoreFailed
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.hooks.rules import verify_signature


def dispatcher(state: StateDir, **kwargs: Any) -> tuple[HookDispatcher, FakeHTTP, Store]:
    store = Store.open(state)
    http = FakeHTTP()
    return HookDispatcher(Clock(), http, store=store, **kwargs), http, store


def test_a_subscription_is_kept_before_add_returns(state):
    """add() has written the hook, its events and its secret when it returns."""
    hooks, _, store = dispatcher(state)
    added = hooks.add(URL, ["ready", "exited"])
    [kept] = store.hooks()
    assert (kept.id, kept.url, kept.events, kept.secret, kept.seq) == (
        added["id"], URL, ("ready", "exited"), added["secret"], 0)
    hooks.remove(added["id"])
    assert store.hooks() == []


def test_records_stay_kept_until_delivered_or_dropped(state):
    """A record is kept from publish until a 2xx (delivered) or a 4xx (dropped)."""
    hooks, http, store = dispatcher(state)
    hooks.add(URL, ["*"])
    for name in ("starting", "ready", "stopping"):
        hooks.publish(record(name))
    assert [q.seq for q in store.hooks()[0].queued] == [1, 2, 3]
    http.answer(204)
    assert [q.seq for q in store.hooks()[0].queued] == [2, 3]
    http.answer(404)  # refused for good: dropped
    assert [q.seq for q in store.hooks()[0].queued] == [3]
    http.refuse()  # the receiver is down: kept, retried
    assert [q.seq for q in store.hooks()[0].queued] == [3]
    assert store.hooks()[0].seq == 3


def test_after_a_restart_queued_records_go_out_again_in_order_and_seq_goes_on(state):
    """A new dispatcher on the same store resends what was undelivered, then goes on."""
    first, http, store = dispatcher(state)
    added = first.add(URL, ["*"])
    for name in ("starting", "ready"):
        first.publish(record(name))
    http.answer(204)  # seq 1 delivered; seq 2 is in flight when the daemon dies
    store.close()  # (a SIGKILL: nothing else is written)

    second, http2, store2 = dispatcher(state)
    second.restore()
    assert second.list()[0]["id"] == added["id"]
    assert second.list()[0]["queued"] == 1
    second.publish(record("stopping"))
    http2.answer(204)
    http2.answer(204)
    bodies = [call.body for call in http2.calls]
    assert [(b["seq"], b["event"]) for b in bodies] == [(2, "ready"), (3, "stopping")]
    for call in http2.calls:
        assert verify_signature(added["secret"], call.data, call.headers["X-Signature"])
        assert call.headers["X-Delivery"] == str(json.loads(call.data)["seq"])
    assert store2.hooks()[0].queued == ()
    store2.close()


def test_restore_takes_the_hooks_already_read_and_reads_them_no_more(state, monkeypatch):
    """As the daemon starts: the hooks read once from the store are restored as they were."""
    first, _, store = dispatcher(state)
    added = first.add(URL, ["*"])
    first.publish(record("ready"))
    store.close()
    second, http, store2 = dispatcher(state)
    kept = store2.hooks()

    def again() -> None:
        raise AssertionError("the hooks are read twice")

    monkeypatch.setattr(store2, "hooks", again)
    second.restore(kept)
    assert [(hook["id"], hook["queued"]) for hook in second.list()] == [(added["id"], 1)]
    assert [call.body["seq"] for call in http.calls] == [1]
    store2.close()


def test_a_hook_the_allow_list_no_longer_allows_is_forgotten(state):
    """Restored under a narrower allow list, a hook outside it is dropped, logged and forgotten."""
    first, _, store = dispatcher(state)
    added = first.add(URL, ["*"])
    store.close()
    second, http, store2 = dispatcher(state, allow="10.0.0.0/8")
    with capturedLogs() as events:
        second.restore()
    assert second.list() == [] and store2.hooks() == [] and http.calls == []
    assert any(added["id"] in formatEvent(e) and "not restored" in formatEvent(e)
               for e in events)
    store2.close()


def test_a_queue_longer_than_max_queue_keeps_the_newest(state):
    """Restored with a smaller max_queue: the oldest beyond one in flight and max_queue
    behind it are dropped and counted."""
    first, _, store = dispatcher(state)
    first.add(URL, ["*"])
    for name in ("starting", "ready", "stopping", "exited"):
        first.publish(record(name))
    store.close()
    second, http, store2 = dispatcher(state, max_queue=2)
    second.restore()
    assert [call.body["seq"] for call in http.calls] == [2]
    assert second.list()[0]["dropped"] == 1
    assert [q.seq for q in store2.hooks()[0].queued] == [2, 3, 4]
    store2.close()


def test_close_keeps_everything_for_the_next_start(state):
    """Closing the dispatcher (the daemon stops) forgets nothing in the store."""
    hooks, _, store = dispatcher(state)
    hooks.add(URL, ["*"])
    hooks.publish(record("ready"))
    hooks.close()
    assert [q.seq for q in store.hooks()[0].queued] == [1]
    store.close()


def test_a_subscription_that_cannot_be_kept_is_not_added(state):
    """If the store fails, add raises StoreFailed and there is no hook."""
    hooks, _, store = dispatcher(state)
    store.close()
    with pytest.raises(StoreFailed):
        hooks.add(URL, ["*"])
    assert hooks.list() == []


def test_a_record_that_cannot_be_kept_is_still_delivered(state):
    """A store failure while queueing is logged; delivery goes on from memory."""
    hooks, http, store = dispatcher(state)
    hooks.add(URL, ["*"])
    store.close()
    with capturedLogs() as events:
        hooks.publish(record("ready"))
    assert [call.body["seq"] for call in http.calls] == [1]
    assert any("could not queue" in formatEvent(e) for e in events)
