"""
Web-hooks: tell subscribers about job events by signed HTTP POSTs.

A :class:`HookDispatcher` holds the subscriptions. Pass its
:meth:`~HookDispatcher.publish` to ``Initiator.subscribe``; each hook whose
events match a record queues it, and delivers its queue strictly in order,
one request at a time, retrying with exponential backoff. Subscribers check
``X-Signature`` with :func:`verify_signature`.

Given a :class:`~turberfield_twisted.store.Store`, the dispatcher keeps in
it every subscription (with its secret and its last ``seq``) and every
record until it is delivered or dropped. :meth:`~HookDispatcher.restore`
takes them back after a restart: undelivered records are sent again, in
order, so each is delivered at least once (one that was in flight may
arrive twice: subscribers drop a ``seq`` they have seen), and each hook's
``seq`` goes on from where it was.
"""

from __future__ import annotations

import builtins
import json
import random as _random
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import StoreFailed, UnknownHook
from .hook_rules import (
    HookNotAllowed,
    HookRejected,
    check_events,
    check_url,
    parse_networks,
    sign,
    verify_signature,
)
from .job import JobEvent
from .store import HookRecord, QueuedRecord, Store
from .supervision import backoff

__all__ = [
    "HookDispatcher",
    "HookNotAllowed",
    "HookRejected",
    "UnknownHook",
    "parse_networks",
    "sign",
    "verify_signature",
]

_JITTER = 0.2


@attrs.frozen
class _Delivery:
    """One queued record: its sequence number and the exact bytes to send."""

    seq: int
    event: str
    body: bytes
    signature: str = attrs.field(repr=False)


@attrs.define(eq=False)
class _Hook:
    """One subscription and its delivery state."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str = attrs.field(repr=False)
    queue: deque[_Delivery] = attrs.field(factory=deque, repr=False)
    current: _Delivery | None = None
    attempts: int = 0
    seq: int = 0
    delivered: int = 0
    dropped: int = 0
    failed_attempts: int = 0
    removed: bool = False
    pumping: bool = False
    request: Deferred[Any] | None = attrs.field(default=None, repr=False)
    retry: IDelayedCall | None = attrs.field(default=None, repr=False)

    def wants(self, event: JobEvent) -> bool:
        """Whether this hook subscribed to ``event``."""
        return "*" in self.events or event.name in self.events or event.kind in self.events

    def as_json(self) -> dict[str, Any]:
        """The public view of this hook: no secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": builtins.list(self.events),
            "queued": len(self.queue) + (self.current is not None),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failed_attempts": self.failed_attempts,
        }


def _header_text(value: Any) -> str:
    """A short printable-ASCII rendering of ``value`` for a header."""
    return re.sub(r"[^\x21-\x7e]", "_", str(value))[:128] or "_"


class HookDispatcher:
    """
    Web-hook subscriptions and their delivery.

    ``reactor`` times retries; ``http`` is a treq-like client (its ``post``
    takes ``data``, ``headers``, ``timeout``, ``reactor`` and
    ``allow_redirects``). Hook URLs must name an IP literal inside one of
    the ``allow`` networks, or ``localhost``. Each hook queues at most
    ``max_queue`` records besides the one being sent; a request gets
    ``timeout`` seconds; retries wait ``backoff_initial * backoff_factor **
    n`` seconds, capped at ``backoff_cap``, less up to 20% jitter drawn
    with ``random``. At most ``max_hooks`` hooks may exist at once.
    ``store`` (optional) keeps subscriptions and undelivered records.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        http: Any,
        allow: str | Iterable[str] = "127.0.0.0/8, ::1",
        max_queue: int = 1000,
        timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_factor: float = 2.0,
        backoff_cap: float = 30.0,
        random: Callable[[], float] = _random.random,
        max_hooks: int = 100,
        store: Store | None = None,
    ):
        if max_queue < 1 or max_hooks < 1:
            raise ValueError("max_queue and max_hooks must be at least 1")
        if timeout <= 0 or backoff_initial < 0 or backoff_factor < 1 or backoff_cap < 0:
            raise ValueError("timeout must be positive, backoff values not negative "
                             "and backoff_factor at least 1")
        self._reactor = reactor
        self._http = http
        self.allow = parse_networks(allow)
        self.max_queue = max_queue
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_factor = backoff_factor
        self.backoff_cap = backoff_cap
        self.max_hooks = max_hooks
        self._random = random
        self._hooks: dict[str, _Hook] = {}
        self._closed = False
        self._store = store

    # -- subscriptions -----------------------------------------------------

    def add(self, url: str, events: builtins.list[str]) -> dict[str, Any]:
        """
        Subscribe ``url`` to ``events`` and return ``{"id", "url", "events",
        "secret"}``: the only time the secret is shown.

        Raise :class:`HookNotAllowed` for an address outside the allow list,
        :class:`HookRejected` for any other bad input, :class:`StoreFailed`
        if it could not be kept (it is not added).
        """
        if self._closed:
            raise RuntimeError("the hook dispatcher is closed")
        url = check_url(url, self.allow)
        events = check_events(events)
        if len(self._hooks) >= self.max_hooks:
            raise HookRejected(f"at most {self.max_hooks} hooks may be registered")
        hook_id = secrets.token_hex(6)
        while hook_id in self._hooks:
            hook_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        if self._store is not None:
            self._store.add_hook(HookRecord(hook_id, url, tuple(events), secret))
        self._hooks[hook_id] = _Hook(id=hook_id, url=url, events=tuple(events), secret=secret)
        self.log.info("hook {hook_id} added for {events} to {url}", hook_id=hook_id,
                      events=",".join(events), url=url)
        return {"id": hook_id, "url": url, "events": builtins.list(events), "secret": secret}

    def remove(self, hook_id: str) -> None:
        """Forget a hook: drop its queue, cancel its request and retry.

        Raise :class:`UnknownHook` if there is none with ``hook_id``.
        """
        hook = self._hooks.get(hook_id)
        if hook is None:
            raise UnknownHook(hook_id)
        if self._store is not None:
            self._store.remove_hook(hook_id)
        del self._hooks[hook_id]
        self._stop(hook)
        self.log.info("hook {hook_id} removed", hook_id=hook_id)

    def restore(self) -> None:
        """
        Take back the subscriptions the store keeps, with their secrets and
        ``seq``, and send their undelivered records again, in order. One
        whose URL the allow list no longer allows is forgotten (logged).
        """
        if self._store is None or self._closed:
            return
        for record in self._store.hooks():
            try:
                url = check_url(record.url, self.allow)
            except HookRejected as exc:
                self.log.error("hook {hook_id} is forgotten, not restored: {error}",
                               hook_id=record.id, error=str(exc))
                self._keep(self._store.remove_hook, record.id)
                continue
            hook = _Hook(id=record.id, url=url, events=record.events, secret=record.secret,
                         seq=record.seq)
            # As at run time: one record in flight and max_queue behind it.
            excess = record.queued[: max(0, len(record.queued) - self.max_queue - 1)]
            for old in excess:
                hook.dropped += 1
                self._keep(self._store.done, hook.id, old.seq)
            for queued in record.queued[len(excess):]:
                hook.queue.append(_Delivery(queued.seq, queued.event, queued.body,
                                            sign(hook.secret, queued.body)))
            self._hooks[hook.id] = hook
            self.log.info("hook {hook_id} restored: {queued} records to send, seq {seq}",
                          hook_id=hook.id, queued=len(hook.queue), seq=hook.seq)
            self._pump(hook)

    def _keep(self, write: Callable[..., None], *args: Any) -> None:
        """Write to the store; a failure is logged, and delivery goes on in memory."""
        try:
            write(*args)
        except StoreFailed as exc:
            self.log.error("web-hooks: {error}", error=str(exc))

    def close(self) -> Deferred[None]:
        """Stop every hook's request and retry; later records are ignored."""
        self._closed = True
        for hook in builtins.list(self._hooks.values()):
            self._stop(hook)
        self._hooks.clear()
        return succeed(None)

    def list(self) -> builtins.list[dict[str, Any]]:
        """Each hook's ``id, url, events, queued, delivered, dropped, failed_attempts``."""
        return [hook.as_json() for hook in self._hooks.values()]

    # -- publishing ----------------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        """Queue ``event`` for every hook that wants it; never raises."""
        if self._closed:
            return
        for hook in builtins.list(self._hooks.values()):
            try:
                if hook.wants(event):
                    self._enqueue(hook, event)
            except Exception:
                self.log.failure("hook {hook_id} could not queue an event", hook_id=hook.id)

    def _enqueue(self, hook: _Hook, event: JobEvent) -> None:
        hook.seq += 1
        body = json.dumps({**event.as_json(), "seq": hook.seq}, separators=(",", ":"),
                          default=str).encode("utf-8")
        item = _Delivery(hook.seq, _header_text(event.name), body,
                         sign(hook.secret, body))
        dropped = None
        if len(hook.queue) >= self.max_queue:
            old = hook.queue.popleft()
            hook.dropped += 1
            dropped = old.seq
            self.log.warn("hook {hook_id} queue full: dropped delivery {seq}",
                          hook_id=hook.id, seq=old.seq, event=old.event)
        if self._store is not None:
            self._keep(self._store.queue, hook.id, QueuedRecord(item.seq, item.event, body),
                       dropped)
        hook.queue.append(item)
        self._pump(hook)

    # -- delivery ------------------------------------------------------------

    def _pump(self, hook: _Hook) -> None:
        """Send the next record if nothing is in flight or waiting to retry."""
        if hook.pumping:
            return  # a send completed synchronously: the loop below goes on
        hook.pumping = True
        try:
            while not hook.removed and hook.request is None and hook.retry is None:
                if hook.current is None:
                    if not hook.queue:
                        break
                    hook.current = hook.queue.popleft()
                    hook.attempts = 0
                self._send(hook, hook.current)
        finally:
            hook.pumping = False

    def _send(self, hook: _Hook, item: _Delivery) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Signature": item.signature,
            "X-Hook-Id": hook.id,
            "X-Event": item.event,
            "X-Delivery": str(item.seq),
        }
        try:
            d: Deferred[Any] = self._http.post(
                hook.url, data=item.body, headers=headers, timeout=self.timeout,
                reactor=self._reactor, allow_redirects=False,
            )
        except Exception:
            d = fail()
        hook.request = d
        d.addCallback(self._drain)
        d.addBoth(self._done, hook, item)

    def _drain(self, response: Any) -> Any:
        """Read (and discard) the response body within ``timeout``; give the code."""
        code = int(response.code)
        content = getattr(response, "content", None)
        if content is None:
            return code
        body: Deferred[Any] = content()
        body.addTimeout(self.timeout, self._reactor)
        return body.addBoth(lambda _: code)

    def _done(self, result: int | Failure, hook: _Hook, item: _Delivery) -> None:
        hook.request = None
        if hook.removed or hook.current is not item:
            return
        if isinstance(result, Failure):
            name = result.type.__name__ if result.type is not None else "error"
            reason = f"{name}: {result.getErrorMessage()}"[:200]
            self._failed(hook, item, reason)
        elif 200 <= result < 300:
            hook.delivered += 1
            self._done_with(hook, item)
            self.log.debug("hook {hook_id} delivered {seq}", hook_id=hook.id, seq=item.seq)
        elif result in (408, 429) or result >= 500:
            self._failed(hook, item, f"HTTP {result}")
        else:
            hook.dropped += 1
            self._done_with(hook, item)
            self.log.warn("hook {hook_id} dropped delivery {seq} ({event}): HTTP {code}",
                          hook_id=hook.id, seq=item.seq, event=item.event, code=result)
        self._pump(hook)

    def _done_with(self, hook: _Hook, item: _Delivery) -> None:
        """``item`` was delivered or dropped: the next one may go."""
        hook.current = None
        if self._store is not None:
            self._keep(self._store.done, hook.id, item.seq)

    def _failed(self, hook: _Hook, item: _Delivery, reason: str) -> None:
        hook.failed_attempts += 1
        delay = self.backoff(hook.attempts)
        hook.attempts += 1
        hook.retry = self._reactor.callLater(delay, self._retry, hook)
        self.log.info(
            "hook {hook_id} delivery {seq} failed ({reason}): retry in {delay:.2f}s",
            hook_id=hook.id, seq=item.seq, reason=reason, delay=delay,
            attempts=hook.attempts, failed_attempts=hook.failed_attempts,
        )

    def _retry(self, hook: _Hook) -> None:
        hook.retry = None
        self._pump(hook)

    def backoff(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (from 0), jitter included."""
        return backoff(attempt, self.backoff_initial, self.backoff_factor, self.backoff_cap,
                       _JITTER, self._random)

    def _stop(self, hook: _Hook) -> None:
        hook.removed = True
        hook.queue.clear()
        hook.current = None
        if hook.retry is not None:
            if hook.retry.active():
                hook.retry.cancel()
            hook.retry = None
        if hook.request is not None:
            request, hook.request = hook.request, None
            request.cancel()
