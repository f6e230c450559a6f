"""
A key/value store worker: the testing kit's example.

Its config section's ``max_keys`` bounds how many keys it holds (default
100); the initiator may change it while it runs (live config). Each change
to a key is posted to the initiator as an event (``set`` or ``deleted``),
which its observers and web-hooks see.

- ``GET /``: ``{"keys": N, "max_keys": M}``
- ``GET /keys/KEY``: the value (404 if there is none)
- ``PUT /keys/KEY``: set it to the body (UTF-8 text); 204, or 507 when full
- ``DELETE /keys/KEY``: 204, or 404 if there is none

Run by the daemon as ``python -P -m kvstore --guid G --port P`` (with this
directory on the initiator's ``pythonpath``).
"""

import json
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker


class KeyValue:
    """The store: one per worker process."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.values: dict[str, str] = {}
        self.max_keys = self._max_keys(ctx.section)

    @staticmethod
    def _max_keys(section: dict[str, str]) -> int:
        return int(section.get("max_keys", "100"))

    def on_config(self, section: dict[str, str]) -> None:
        """The initiator sent a new config: take its ``max_keys``."""
        self.max_keys = self._max_keys(section)

    async def _tell(self, event: str, data: Any) -> None:
        if self.ctx.parent is not None:  # None when run by hand
            await self.ctx.parent.post_event(event, data)

    @app.route("/", methods=["GET"])
    def summary(self, request: Any) -> bytes:
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"keys": len(self.values), "max_keys": self.max_keys}).encode()

    @app.route("/keys/<key>", methods=["GET"])
    def get(self, request: Any, key: str) -> bytes:
        if key not in self.values:
            request.setResponseCode(404)
            return b""
        return self.values[key].encode()

    @app.route("/keys/<key>", methods=["PUT"])
    async def put(self, request: Any, key: str) -> bytes:
        if key not in self.values and len(self.values) >= self.max_keys:
            request.setResponseCode(507)
            return b"full"
        self.values[key] = request.content.read().decode("utf-8")
        await self._tell("set", {"key": key})
        request.setResponseCode(204)
        return b""

    @app.route("/keys/<key>", methods=["DELETE"])
    async def delete(self, request: Any, key: str) -> bytes:
        if self.values.pop(key, None) is None:
            request.setResponseCode(404)
            return b""
        await self._tell("deleted", {"key": key})
        request.setResponseCode(204)
        return b""


if __name__ == "__main__":
    run_worker(KeyValue)
