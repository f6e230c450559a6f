"""
The ``proactor`` commands that follow the daemon's event stream until
interrupted: ``logs -f`` (a job's output as its worker writes it) and
``watch`` (every job event). What a worker wrote is shown with its control
characters escaped unless ``--raw``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from turberfield_twisted.cli.client import ControlClient, ServerEvent
from turberfield_twisted.cli.format import format_event, format_logs, printable
from turberfield_twisted.cli.pick import CliError, resolve
from turberfield_twisted.errors import TransportError

__all__ = ["FOLLOW_TRIES", "logs", "watch"]

#: How many times in a row a dropped event stream is followed again.
FOLLOW_TRIES = 5


async def logs(client: ControlClient, args: argparse.Namespace) -> Any:
    """``logs``: a job's recent output; with ``-f``, and what follows."""
    guid = await resolve(client, args.guid)
    if not args.follow:
        lines = await client.logs(guid, lines=args.lines, since=args.since)
        return {"guid": guid, "lines": lines} if args.json else format_logs(lines, args.raw)
    seen: list[tuple[float, str]] = []

    def line(event: ServerEvent) -> None:
        data = event.data
        if event.event != "log" or not isinstance(data, dict):
            return
        mark = (float(data.get("time") or 0), str(data.get("line")))
        if seen and mark <= seen[-1]:
            return  # already printed from the job's tail
        seen[:] = [mark]
        _print(json.dumps(data) if args.json else format_event("log", data, args.raw))

    async def backlog() -> None:
        for entry in await client.logs(guid, lines=args.lines, since=args.since):
            line(ServerEvent(None, "log", entry))

    await _Following(client, line, guid, backlog).run()
    return None


async def watch(client: ControlClient, args: argparse.Namespace) -> Any:
    """``watch``: every job event as it happens."""

    def event(event: ServerEvent) -> None:
        if event.event in ("state", "worker", "service", "gap"):
            _print(json.dumps({"event": event.event, "data": event.data}) if args.json
                   else format_event(event.event, event.data, args.raw))

    async def watching() -> None:
        sys.stderr.write(f"proactor: watching {client.url} (interrupt to stop)\n")
        sys.stderr.flush()

    await _Following(client, event, None, watching).run()
    return None


class _Following:
    """
    Follow ``GET /events`` (with ``logs``) for ``on_event`` until
    interrupted. Once the stream is open, ``first()`` runs, and the
    stream's events wait until it is done. A stream that drops is followed
    again from the last id seen, up to :data:`FOLLOW_TRIES` times in a row
    with no event between.
    """

    def __init__(self, client: ControlClient, on_event: Callable[[ServerEvent], None],
                 logs: str | None, first: Callable[[], Awaitable[None]] | None):
        self.client = client
        self.on_event = on_event
        self.logs = logs
        self.first = first
        self.last_id: str | None = None
        self.held: list[ServerEvent] | None = None if first is not None else []
        self.released = first is None
        self.opened = False
        self.tries = 0

    async def run(self) -> None:
        while True:
            try:
                await self.client.events(self._each, logs=self.logs, last_id=self.last_id)
            except TransportError:
                if not self.opened:
                    raise  # it never answered at all
            self.tries += 1
            if self.tries >= FOLLOW_TRIES:
                raise CliError("the event stream keeps ending: giving up")
            await deferLater(self.client.reactor, float(self.tries), lambda: None)

    def _each(self, event: ServerEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        if event.event == "open":
            self.opened = True
            if self.first is not None and self.held is None:
                self.held = []
                Deferred.fromCoroutine(self._first()).addBoth(self._release)
            return
        self.tries = 0
        if self.released:
            self.on_event(event)
        else:
            assert self.held is not None
            self.held.append(event)

    async def _first(self) -> None:
        assert self.first is not None
        await self.first()

    def _release(self, result: Any) -> None:
        if isinstance(result, Failure):
            message = printable((result.getErrorMessage().splitlines() or ["failed"])[0])
            sys.stderr.write(f"proactor: error: {message}\n")
        self.released = True
        for event in self.held or []:
            self.on_event(event)
        self.held = []


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
