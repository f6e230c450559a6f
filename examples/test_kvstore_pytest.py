"""
The key/value store under pytest (pytest-twisted): in memory first, then
one worker in a process of its own. ``pytest`` in this directory.
"""

import pytest_twisted
from kvstore import KeyValue

from turberfield_twisted.testing import worker_harness

#: The store's section, as it would be in the daemon's config.
SECTION = {"max_keys": 2, "overridable": "max_keys"}


@pytest_twisted.ensureDeferred
async def test_a_value_put_is_got_back_and_posted():
    """PUT then GET: the value comes back, and the initiator heard of it."""
    h = worker_harness(KeyValue, SECTION)
    response = await h.client.put("/keys/colour", data=b"blue")
    assert response.code == 204
    response = await h.client.get("/keys/colour")
    assert await response.text() == "blue"
    assert h.events == [("set", {"key": "colour"})]


@pytest_twisted.ensureDeferred
async def test_a_full_store_refuses_a_new_key_until_its_config_says_more():
    """max_keys from the config bounds the store; a live config change lifts it."""
    h = worker_harness(KeyValue, SECTION)
    for key in ("a", "b"):
        assert (await h.client.put(f"/keys/{key}", data=b"1")).code == 204
    assert (await h.client.put("/keys/c", data=b"1")).code == 507
    await h.push_config({"max_keys": 3})
    assert (await h.client.put("/keys/c", data=b"1")).code == 204
    assert await (await h.client.get("/")).json() == {"keys": 3, "max_keys": 3}


@pytest_twisted.ensureDeferred
async def test_deleting_a_missing_key_is_404_and_posts_nothing():
    """Nothing to delete: 404, and no event."""
    h = worker_harness(KeyValue, SECTION)
    assert (await h.client.delete("/keys/nothing")).code == 404
    assert h.events == []


@pytest_twisted.ensureDeferred
async def test_a_real_worker_over_http(start_worker):
    """The store in a process of its own, launched by an initiator, over real HTTP."""
    worker = await start_worker("kvstore", SECTION)
    assert (await worker.client.put("/keys/colour", data=b"blue")).code == 204
    assert await worker.events.next() == ("set", {"key": "colour"})
    await worker.push_config({"max_keys": 5})
    assert await (await worker.client.get("/")).json() == {"keys": 1, "max_keys": 5}
    [job] = await worker.initiator.jobs()
    assert (job["guid"], job["state"]) == (worker.guid, "ready")
