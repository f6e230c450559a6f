"""
A client loop at a fixed rate, for tests and benchmarks of what a service
loses while it is scaled, rolled out or has an instance killed: its own
process, the standard library only::

    python -P -m turberfield_twisted.testing.loadloop HOST PORT --rate 400 --count 5000 \\
        --seconds 120 [--path /] [--lanes 4] [--until-eof]

Every ``1/rate`` seconds it sends ``GET path``: one request in two on one of
``lanes`` kept-alive connections (each sends its next request once the
last is answered, and connects again once the server closes it), the
other on a new connection (``Connection: close``). It stops after
``count`` requests or ``seconds``, or (``--until-eof``) once its stdin
reaches EOF, waits for what is in flight (each request gets ``timeout``
seconds), and prints one JSON line: ``sent``, ``answered`` (200s),
``failed``, ``retried``, the first ``errors``, the answers ``by`` the
``guid`` their JSON body names, and ``seconds``. Every ``--progress``
answers it prints ``answered N``.

A request is sent again, once, only where HTTP allows a client to (RFC
9112 9.3.1, RFC 9110 9.2.2): it is idempotent (GET) and went on a reused
kept-alive connection that closed before any byte of the answer came (a
server closing an idle connection as it drains). That counts as
``retried``, not failed; anything else that is not a whole 200 answer
(refused, reset after the answer began, a new connection closed, a
timeout, another status) is ``failed``. With ``--retry-any`` a GET whose
new connection closed before any byte of the answer is sent again too
(as RFC 9110 9.2.2 lets a client do for an idempotent request: a server
killed with SIGKILL loses the requests it held).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

__all__ = ["main", "run"]

#: Where a response's head ends.
_HEAD_END = b"\r\n\r\n"


class NothingCame(Exception):
    """The connection closed (or was reset) before any byte of the answer."""


class Broken(Exception):
    """The answer came in part, or not as HTTP/1.1 says."""


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read one answer: status, headers (lower case), body; NothingCame or Broken."""
    buffer, got = b"", 0
    try:
        while _HEAD_END not in buffer:
            chunk = await reader.read(65536)
            if not chunk:
                raise NothingCame() if not got else Broken("closed in the head")
            buffer, got = buffer + chunk, got + len(chunk)
        head, _, buffer = buffer.partition(_HEAD_END)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines[1:])}
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(buffer) < length:
                chunk = await reader.read(65536)
                if not chunk:
                    raise Broken("closed in the body")
                buffer += chunk
            return status, headers, buffer[:length]
        if headers.get("transfer-encoding") != "chunked":
            raise Broken("no length")
        body = b""
        while True:
            while b"\r\n" not in buffer:
                chunk = await reader.read(65536)
                if not chunk:
                    raise Broken("closed in a chunk")
                buffer += chunk
            size_line, _, buffer = buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buffer) < size + 2:
                chunk = await reader.read(65536)
                if not chunk:
                    raise Broken("closed in a chunk")
                buffer += chunk
            body, buffer = body + buffer[:size], buffer[size + 2:]
            if not size:
                return status, headers, body
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise (NothingCame() if not got else Broken(type(exc).__name__)) from None


class Loop:
    """The loop's counts, lanes and what it asks (see the module)."""

    def __init__(self, host: str, port: int, path: str, timeout: float,
                 retry_any: bool = False):
        self.host, self.port, self.timeout = host, port, timeout
        self.retry_any = retry_any
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.closing = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "Connection: close\r\n\r\n").encode()
        self.sent = self.answered = self.failed = self.retried = 0
        self.errors: list[str] = []
        self.by: Counter[str] = Counter()
        self.progress = 0
        self.every = 0

    def _count(self, status: int, body: bytes) -> None:
        if status != 200:
            self._fail(f"status {status}")
            return
        self.answered += 1
        try:
            self.by[str(json.loads(body).get("guid"))] += 1
        except (ValueError, AttributeError):
            self.by["?"] += 1
        if self.every and self.answered % self.every == 0:
            print(f"answered {self.answered}", flush=True)

    def _fail(self, why: str) -> None:
        self.failed += 1
        if len(self.errors) < 20:
            self.errors.append(why)

    async def fresh(self, again: bool = False) -> None:
        """One request on a new connection, closed after it (``again``: a retry)."""
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            self._fail(f"connect: {exc.strerror or type(exc).__name__}")
            return
        retry = False
        try:
            writer.write(self.closing)
            status, _, body = await asyncio.wait_for(_answer(reader), self.timeout)
            self._count(status, body)
        except NothingCame:
            retry = self.retry_any and not again
            if not retry:
                self._fail("new connection closed before any byte of its answer")
        except (Broken, OSError, TimeoutError, ValueError) as exc:
            self._fail(f"new connection: {type(exc).__name__} {exc}")
        finally:
            writer.close()
        if retry:
            self.retried += 1
            await self.fresh(again=True)


class Lane:
    """One kept-alive connection: requests one after another, connecting again when closed."""

    def __init__(self, loop: Loop):
        self.loop = loop
        self.lock = asyncio.Lock()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = False  # it has had a whole answer: it is a reused connection now

    def _drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
        self.used = False

    async def ask(self) -> None:
        """Send one request on this lane, once the last is answered."""
        async with self.lock:
            loop = self.loop
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(loop.host,
                                                                             loop.port)
                assert self.reader is not None
                self.writer.write(loop.request)
                status, headers, body = await asyncio.wait_for(_answer(self.reader),
                                                               loop.timeout)
            except NothingCame:
                reused = self.used
                self._drop()
                if not (reused or loop.retry_any):
                    loop._fail("kept-alive connection closed before its first answer")
                    return
                loop.retried += 1  # where HTTP allows it: idempotent, reused, nothing came
                await loop.fresh(again=True)
                return
            except (Broken, OSError, TimeoutError, ValueError) as exc:
                self._drop()
                loop._fail(f"kept-alive: {type(exc).__name__} {exc}")
                return
            self.used = True
            loop._count(status, body)
            if headers.get("connection", "").lower() == "close":
                self._drop()


async def run(host: str, port: int, rate: float, count: int, seconds: float, path: str = "/",
              lanes: int = 4, until_eof: bool = False, progress: int = 500,
              timeout: float = 10.0, retry_any: bool = False) -> dict[str, Any]:
    """Run the loop (see the module); its counts."""
    loop = Loop(host, port, path, timeout, retry_any)
    loop.every = progress
    stop = asyncio.Event()
    if until_eof:
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch() -> None:
            while await reader.read(4096):
                pass
            stop.set()

        watching = asyncio.ensure_future(watch())
    ways = [Lane(loop) for _ in range(lanes)]
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    print("started", flush=True)
    for n in range(count):
        due = start + n / rate
        if due - start >= seconds or stop.is_set():
            break
        wait = due - time.monotonic()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                break
            except TimeoutError:
                pass
        loop.sent += 1
        work = ways[n // 2 % lanes].ask() if n % 2 == 0 else loop.fresh()
        tasks.append(asyncio.ensure_future(work))
    await asyncio.gather(*tasks)
    for lane in ways:
        lane._drop()
    if until_eof:
        watching.cancel()
    return {"sent": loop.sent, "answered": loop.answered, "failed": loop.failed,
            "retried": loop.retried, "errors": loop.errors, "by": dict(loop.by),
            "seconds": round(time.monotonic() - start, 3)}


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module)."""
    parser = argparse.ArgumentParser(description="A fixed-rate HTTP client loop.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--path", default="/")
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--until-eof", action="store_true")
    parser.add_argument("--progress", type=int, default=500)
    parser.add_argument("--retry-any", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.host, args.port, args.rate, args.count, args.seconds,
                             args.path, args.lanes, args.until_eof, args.progress,
                             retry_any=args.retry_any))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
