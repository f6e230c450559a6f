"""
The key/value store under trial: in memory first, then one worker in a
process of its own. ``python -m twisted.trial --reactor=asyncio
test_kvstore_trial`` in this directory.
"""

from kvstore import KeyValue
from twisted.trial.unittest import TestCase

from turberfield_twisted.testing import running_worker, worker_harness

#: The store's section, as it would be in the daemon's config.
SECTION = {"max_keys": 2, "overridable": "max_keys"}


class InMemory(TestCase):
    """The store's app as the runtime builds it, with no process and no port."""

    async def test_a_value_put_is_got_back_and_posted(self):
        h = worker_harness(KeyValue, SECTION)
        response = await h.client.put("/keys/colour", data=b"blue")
        self.assertEqual(response.code, 204)
        response = await h.client.get("/keys/colour")
        self.assertEqual(await response.text(), "blue")
        self.assertEqual(h.events, [("set", {"key": "colour"})])

    async def test_a_full_store_refuses_a_new_key_until_its_config_says_more(self):
        h = worker_harness(KeyValue, SECTION)
        for key in ("a", "b"):
            self.assertEqual((await h.client.put(f"/keys/{key}", data=b"1")).code, 204)
        self.assertEqual((await h.client.put("/keys/c", data=b"1")).code, 507)
        await h.push_config({"max_keys": 3})
        self.assertEqual((await h.client.put("/keys/c", data=b"1")).code, 204)
        self.assertEqual(await (await h.client.get("/")).json(), {"keys": 3, "max_keys": 3})

    async def test_deleting_a_missing_key_is_404_and_posts_nothing(self):
        h = worker_harness(KeyValue, SECTION)
        self.assertEqual((await h.client.delete("/keys/nothing")).code, 404)
        self.assertEqual(h.events, [])


class InAProcess(TestCase):
    """The store launched by an initiator, over real HTTP."""

    async def test_a_real_worker_over_http(self):
        async with running_worker("kvstore", SECTION) as worker:
            self.assertEqual((await worker.client.put("/keys/colour", data=b"blue")).code, 204)
            self.assertEqual(await worker.events.next(), ("set", {"key": "colour"}))
            await worker.push_config({"max_keys": 5})
            summary = await (await worker.client.get("/")).json()
            self.assertEqual(summary, {"keys": 1, "max_keys": 5})
            [job] = await worker.initiator.jobs()
            self.assertEqual((job["guid"], job["state"]), (worker.guid, "ready"))
