"""
Failed authentication, slowed per remote address: after a run of wrong
tokens from one address, every request of it that needs a token is
answered 429 with ``Retry-After`` for a while, longer after each further
run (exponential, capped). Another address is never slowed; the state is
bounded (the address least recently failed is forgotten first).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import attrs
from twisted.internet.interfaces import IReactorTime

__all__ = ["Throttle"]


@attrs.define
class _Failures:
    count: int = 0
    until: float = 0.0


class Throttle:
    """
    ``allowed`` wrong tokens in a row from one address, then it waits
    ``base`` seconds, doubled after each further wrong one up to ``cap``;
    a right token resets it. At most ``max_addresses`` are remembered.
    """

    def __init__(self, reactor: IReactorTime, allowed: int = 10, base: float = 1.0,
                 cap: float = 300.0, max_addresses: int = 10_000):
        if allowed < 1 or base <= 0 or cap < base or max_addresses < 1:
            raise ValueError("allowed, base, cap and max_addresses must be positive")
        self._reactor = reactor
        self.allowed = allowed
        self.base = base
        self.cap = cap
        self.max_addresses = max_addresses
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_address)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds ``address`` must still wait, or None if it may try now."""
        entry = self._by_address.get(address)
        if entry is None:
            return None
        left = entry.until - self._reactor.seconds()
        return math.ceil(left) if left > 0 else None

    def failed(self, address: str) -> None:
        """A wrong (or no) token from ``address``."""
        entry = self._by_address.pop(address, None) or _Failures()
        entry.count += 1
        over = entry.count - self.allowed
        if over >= 0:
            entry.until = self._reactor.seconds() + min(self.cap, self.base * 2 ** min(over, 32))
        self._by_address[address] = entry  # the most recent last
        while len(self._by_address) > self.max_addresses:
            self._by_address.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """A right token from ``address``: its run of failures is forgotten."""
        self._by_address.pop(address, None)
