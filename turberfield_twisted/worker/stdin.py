"""
Reading a whole config from a stream (a worker's stdin) up to EOF, with a
timeout, on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import configparser
import io
import os
import stat
from typing import IO, Any

from turberfield_twisted.configtext import parse_config
from turberfield_twisted.errors import ConfigError

__all__ = ["NoConfigStream", "read_stream"]

class NoConfigStream(Exception):
    """The stream cannot hold a config: a terminal, say (the config comes on a pipe or a file)."""


def _kind(fObj: IO[Any]) -> str:
    """'pipe' (a FIFO or socket: polled), 'terminal', or 'file' (read at once)."""
    try:
        fd = fObj.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return "file"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "pipe"
    return "terminal" if os.isatty(fd) else "file"  # /dev/null is a file here


async def _read_fd(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    """Read ``fd`` to EOF through the loop's reader callbacks."""
    done: asyncio.Future[bytes] = loop.create_future()
    chunks: list[bytes] = []
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            loop.remove_reader(fd)
            if not done.done():
                done.set_exception(exc)
            return
        if chunk:
            chunks.append(chunk)
            return
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(b"".join(chunks))

    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)


async def read_stream(
    fObj: IO[Any], timeout: float | None, loop: asyncio.AbstractEventLoop,
    source: str = "<stdin>"
) -> configparser.ConfigParser:
    """
    Read a whole config from ``fObj`` up to EOF and parse it.

    Pipes and sockets are polled by ``loop``; files, ``/dev/null`` and
    in-memory streams are read at once. Raise :class:`asyncio.TimeoutError`
    if EOF is not seen within ``timeout`` seconds, :class:`NoConfigStream`
    for a terminal (nobody types a config), :class:`ConfigError` if the
    text is malformed.
    """
    kind = _kind(fObj)
    if kind == "terminal":
        raise NoConfigStream(f"{source} is a terminal")
    if kind == "pipe":
        raw: bytes | str = await asyncio.wait_for(_read_fd(loop, fObj.fileno()), timeout)
    else:
        raw = getattr(fObj, "buffer", fObj).read()
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1 if isinstance(raw, bytes) else None
        raise ConfigError("bytes that are not UTF-8", source, line) from None
    return parse_config(text, source=source)
