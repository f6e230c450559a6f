"""
Web-hooks: tell subscribers about job events by signed HTTP POSTs.

A :class:`HookDispatcher` holds the subscriptions. Pass its
:meth:`~HookDispatcher.publish` to ``Initiator.subscribe``; each hook whose
events match a record queues it, and delivers its queue strictly in order,
one request at a time, retrying with exponential backoff. Subscribers check
``X-Signature`` with :func:`verify_signature`.

A try that meets a pooled connection the receiver had closed (as an
HTTP/1.0 receiver does after every answer) is no failure: it goes again at
once on a new connection, and is not counted in ``failed_attempts``. Once a
delivery to a receiver (scheme, host and port) gets through, every hook of
that receiver waiting out a retry after no answer at all (refused, timed
out) sends at once: the receiver is back. One that got an HTTP error keeps
its backoff: its receiver answers, and said no.

Given a :class:`~turberfield_twisted.daemon.store.Store`, the dispatcher keeps in
it every subscription (with its secret and its last ``seq``) and every
record until it is delivered or dropped. :meth:`~HookDispatcher.restore`
takes them back after a restart: undelivered records are sent again, in
order, so each is delivered at least once (one that was in flight may
arrive twice: subscribers drop a ``seq`` they have seen), and each hook's
``seq`` goes on from where it was.
"""

from __future__ import annotations

import builtins
import random as _random
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from turberfield_twisted.config.policy import backoff
from turberfield_twisted.config.readers import BadValue, Network, networks
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import HookRecord, QueuedRecord
from turberfield_twisted.errors import DaemonStopping, StoreFailed, UnknownHook
from turberfield_twisted.hooks.rules import HookRejected, check_events, check_url, sign
from turberfield_twisted.hooks.subscription import Delivery, Subscription
from turberfield_twisted.jobs.job import JobEvent

__all__ = ["HookDispatcher"]

_JITTER = 0.2


#: How many times in a row a record is sent again at once after meeting a
#: pooled connection the receiver had closed, before the backoff applies.
FRESH_TRIES = 3


def _stale(failure: Failure) -> bool:
    """Whether a POST failed before any answer on a connection that was closed under it."""
    from twisted.web.client import RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived

    return bool(failure.check(ResponseNeverReceived, RequestNotSent, RequestTransmissionFailed))


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """The receiver of a hook's ``url``: its scheme, host and port (as checked at add)."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _allow_list(allow: str | Iterable[Network]) -> tuple[Network, ...]:
    """
    ``allow`` as networks: as given (the settings' ``hook_allow``), or read
    from text as the config's ``hook_allow`` is; ValueError if there are
    none, or the text is not a list of networks.
    """
    try:
        found = networks(allow) if isinstance(allow, str) else tuple(allow)
    except BadValue as exc:
        raise ValueError(f"the hook allow list {exc}") from None
    if not found:
        raise ValueError("the hook allow list is empty")
    return found


class HookDispatcher:
    """
    Web-hook subscriptions and their delivery.

    ``reactor`` times retries; ``http`` is a treq-like client (its ``post``
    takes ``data``, ``headers``, ``timeout``, ``reactor`` and
    ``allow_redirects``). Hook URLs must name an IP literal inside one of
    the ``allow`` networks (or their text, comma or space separated), or
    ``localhost``. Each hook queues at most
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
        allow: str | Iterable[Network] = "127.0.0.0/8, ::1",
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
        self.allow = _allow_list(allow)
        self.max_queue = max_queue
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_factor = backoff_factor
        self.backoff_cap = backoff_cap
        self.max_hooks = max_hooks
        self._random = random
        self._hooks: dict[str, Subscription] = {}
        self._closed = False
        self._store = store

    # -- subscriptions -----------------------------------------------------

    def add(self, url: str, events: builtins.list[str]) -> dict[str, Any]:
        """
        Subscribe ``url`` to ``events`` and return ``{"id", "url", "events",
        "secret"}``: the only time the secret is shown. The same URL and
        events again: the existing subscription (``existing``: true, no secret).

        Raise :class:`HookNotAllowed` for an address outside the allow list,
        :class:`HookRejected` for any other bad input, :class:`StoreFailed`
        if it could not be kept (it is not added), :class:`DaemonStopping`
        once it is closed.
        """
        if self._closed:
            raise DaemonStopping()
        url = check_url(url, self.allow)
        events = check_events(events)
        for hook in self._hooks.values():
            if hook.url == url and set(hook.events) == set(events):
                return {**hook.as_json(), "existing": True}
        if len(self._hooks) >= self.max_hooks:
            raise HookRejected(f"at most {self.max_hooks} hooks may be registered")
        hook_id = secrets.token_hex(6)
        while hook_id in self._hooks:
            hook_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        if self._store is not None:
            self._store.add_hook(HookRecord(hook_id, url, tuple(events), secret))
        self._hooks[hook_id] = Subscription(id=hook_id, url=url, events=tuple(events),
                                            secret=secret)
        self.log.info("hook {hook_id} added for {events} to {url}", hook_id=hook_id,
                      events=",".join(events), url=url)
        return {"id": hook_id, "url": url, "events": builtins.list(events), "secret": secret}

    def remove(self, hook_id: str) -> None:
        """Forget a hook: drop its queue, cancel its request and retry.

        Raise :class:`UnknownHook` if there is none with ``hook_id``,
        :class:`StoreFailed` if the store could not forget it (it stays),
        :class:`DaemonStopping` once the dispatcher is closed.
        """
        if self._closed:
            raise DaemonStopping()
        hook = self._hooks.get(hook_id)
        if hook is None:
            raise UnknownHook(hook_id)
        if self._store is not None:
            self._store.remove_hook(hook_id)
        del self._hooks[hook_id]
        self._stop(hook)
        self.log.info("hook {hook_id} removed", hook_id=hook_id)

    def restore(self, kept: Iterable[HookRecord] | None = None) -> None:
        """
        Take back the subscriptions the store keeps (``kept``, if they have
        been read from it already), with their secrets and ``seq``, and send
        their undelivered records again, in order. One whose URL the allow
        list no longer allows is forgotten (logged).
        """
        if self._store is None or self._closed:
            return
        for record in self._store.hooks() if kept is None else kept:
            try:
                url = check_url(record.url, self.allow)
            except HookRejected as exc:
                self.log.error("hook {hook_id} is forgotten, not restored: {error}",
                               hook_id=record.id, error=str(exc))
                self._keep(self._store.remove_hook, record.id)
                continue
            hook = Subscription(id=record.id, url=url, events=record.events, secret=record.secret,
                         seq=record.seq)
            # As at run time: one record in flight and max_queue behind it.
            excess = record.queued[: max(0, len(record.queued) - self.max_queue - 1)]
            for old in excess:
                hook.dropped += 1
                self._keep(self._store.done, hook.id, old.seq)
            for queued in record.queued[len(excess):]:
                hook.queue.append(Delivery(queued.seq, queued.event, queued.body,
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

    def _enqueue(self, hook: Subscription, event: JobEvent) -> None:
        item, dropped = hook.record(event, self.max_queue)
        if dropped is not None:
            self.log.warn("hook {hook_id} queue full: dropped delivery {seq}",
                          hook_id=hook.id, seq=dropped)
        if self._store is not None:
            self._keep(self._store.queue, hook.id,
                       QueuedRecord(item.seq, item.event, item.body), dropped)
        self._pump(hook)

    # -- delivery ------------------------------------------------------------

    def _pump(self, hook: Subscription) -> None:
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

    def _send(self, hook: Subscription, item: Delivery) -> None:
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

    def _done(self, result: int | Failure, hook: Subscription, item: Delivery) -> None:
        hook.request = None
        if hook.removed or hook.current is not item:
            return
        if isinstance(result, Failure) and _stale(result) and hook.fresh < FRESH_TRIES:
            # A pooled connection the receiver had closed: that connection is gone
            # from the pool now, so the next try opens a fresh one, at once.
            hook.fresh += 1
            self.log.debug("hook {hook_id} delivery {seq} met a closed connection: again",
                           hook_id=hook.id, seq=item.seq)
        elif isinstance(result, Failure):
            name = result.type.__name__ if result.type is not None else "error"
            reason = f"{name}: {result.getErrorMessage()}"[:200]
            self._failed(hook, item, reason, unreachable=True)
        elif 200 <= result < 300:
            hook.delivered += 1
            self._done_with(hook, item)
            self.log.debug("hook {hook_id} delivered {seq}", hook_id=hook.id, seq=item.seq)
            self._wake(hook)
        elif result in (408, 429) or result >= 500:
            self._failed(hook, item, f"HTTP {result}", unreachable=False)
        else:
            hook.dropped += 1
            self._done_with(hook, item)
            self.log.warn("hook {hook_id} dropped delivery {seq} ({event}): HTTP {code}",
                          hook_id=hook.id, seq=item.seq, event=item.event, code=result)
        self._pump(hook)

    def _done_with(self, hook: Subscription, item: Delivery) -> None:
        """``item`` was delivered or dropped: the next one may go."""
        hook.current = None
        hook.fresh = 0
        if self._store is not None:
            self._keep(self._store.done, hook.id, item.seq)

    def _failed(self, hook: Subscription, item: Delivery, reason: str,
                unreachable: bool) -> None:
        hook.failed_attempts += 1
        hook.unreachable = unreachable
        delay = self.backoff(hook.attempts)
        hook.attempts += 1
        hook.retry = self._reactor.callLater(delay, self._retry, hook)
        self.log.info(
            "hook {hook_id} delivery {seq} failed ({reason}): retry in {delay:.2f}s",
            hook_id=hook.id, seq=item.seq, reason=reason, delay=delay,
            attempts=hook.attempts, failed_attempts=hook.failed_attempts,
        )

    def _retry(self, hook: Subscription) -> None:
        hook.retry = None
        self._pump(hook)

    def _wake(self, through: Subscription) -> None:
        """
        A delivery of ``through`` got through: its receiver's other hooks that
        found it unreachable retry now.
        """
        origin = _origin(through.url)
        for hook in builtins.list(self._hooks.values()):
            if (hook is through or hook.retry is None or not hook.unreachable
                    or _origin(hook.url) != origin):
                continue
            if hook.retry.active():
                hook.retry.cancel()
            self.log.info("hook {hook_id}: its receiver is back; retrying now",
                          hook_id=hook.id)
            self._retry(hook)

    def backoff(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (from 0), jitter included."""
        return backoff(attempt, self.backoff_initial, self.backoff_factor, self.backoff_cap,
                       _JITTER, self._random)

    def _stop(self, hook: Subscription) -> None:
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
