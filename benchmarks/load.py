"""
A small HTTP/1.1 load generator: ``python -P load.py URL CONNECTIONS SECONDS
MAX_REQUESTS [HEADER...]``. Each connection sends GET requests one after the
other on one kept-alive connection; it stops after SECONDS or MAX_REQUESTS
in all, whichever comes first, and prints ``{"requests", "seconds",
"errors"}`` as JSON.
"""

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, budget: "_Budget", done: asyncio.Future):
        self.request = request
        self.budget = budget
        self.done = done
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self._next()

    def _next(self):
        if self.budget.take():
            self.transport.write(self.request)
        else:
            self.transport.close()

    def data_received(self, data):
        self.buffer += data
        while True:
            total = _response_end(self.buffer)
            if total is None:
                return
            if total < 0:
                self.budget.errors += 1
                self.transport.close()
                return
            if not self.buffer.startswith(b"HTTP/1.1 200"):
                self.budget.errors += 1
            self.budget.answered += 1
            self.buffer = self.buffer[total:]
            self._next()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)


def _response_end(buffer: bytes) -> int | None:
    """Where the first whole response in ``buffer`` ends (None: not yet; -1: can't tell)."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buffer[:head_end].lower()
    at = head.find(b"content-length:")
    if at >= 0:
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15:line_end if line_end > 0 else None].strip())
        total = head_end + 4 + length
        return total if len(buffer) >= total else None
    if b"transfer-encoding: chunked" not in head:
        return -1
    at = head_end + 4
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(buffer[at:line_end].split(b";")[0], 16)
        at = line_end + 2 + size + 2
        if len(buffer) < at:
            return None
        if size == 0:
            return at


class _Budget:
    def __init__(self, limit: int, deadline: float):
        self.limit = limit
        self.deadline = deadline
        self.sent = 0
        self.answered = 0
        self.errors = 0

    def take(self) -> bool:
        if self.sent >= self.limit or time.perf_counter() >= self.deadline:
            return False
        self.sent += 1
        return True


async def run(url: str, connections: int, seconds: float, limit: int, headers: list[str]):
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{h}\r\n" for h in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode()
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    budget = _Budget(limit, start + seconds)
    waits = []
    for _ in range(connections):
        done = loop.create_future()
        await loop.create_connection(lambda d=done: _Client(request, budget, d),
                                     parts.hostname, parts.port)
        waits.append(done)
    await asyncio.wait_for(asyncio.gather(*waits), seconds + 10)
    elapsed = time.perf_counter() - start
    return {"requests": budget.answered, "seconds": elapsed, "errors": budget.errors}


def main() -> None:
    url, connections, seconds, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \
        int(sys.argv[4])
    print(json.dumps(asyncio.run(run(url, connections, seconds, limit, sys.argv[5:]))))


if __name__ == "__main__":
    main()
