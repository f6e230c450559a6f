"""
The tokens the control API takes: the admin token (kept in the state
dir's ``admin.token``, rotated without a restart) and named tokens, each
with a role, an optional scope and expiry, kept in the store as an
HMAC-SHA256 of the secret under a key of the daemon's own (never the
secret itself), and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from turberfield_twisted.access.records import ITokenStore, TokenRecord
from turberfield_twisted.access.roles import Role
from turberfield_twisted.errors import Invalid, Unknown

__all__ = ["ADMIN", "Caller", "TokenBook", "TokenTaken", "UnknownToken"]

#: The admin token's name: not one a named token may take.
ADMIN = "admin"


#: What a token's name may look like.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


#: How often a token's last use is written to the store, at most (seconds).
TOUCH_EVERY = 60.0


class UnknownToken(Unknown):
    """No token has that name (404)."""

    what = "token"


class TokenTaken(Exception):
    """A token of that name exists already, or the name is the admin token's (409)."""


@attrs.frozen
class Caller:
    """Who made a request: the token's ``name``, ``role`` and ``scope`` (empty: any)."""

    name: str
    role: Role
    scope: tuple[str, ...] = ()
    #: The keyed hash of the token it used: what a revocation names.
    digest: str = attrs.field(default="", repr=False, eq=False)
    #: When its token stops working (None: never, unless revoked).
    expires: float | None = attrs.field(default=None, eq=False)

    def may_touch(self, *names: str | None) -> bool:
        """Whether the token may act on something of these module or service names."""
        return not self.scope or any(name in self.scope for name in names if name)


class TokenBook:
    """
    Every token the API takes. ``key`` is the HMAC key (from the state
    dir), ``store`` keeps the named tokens, ``admin`` is the admin token's
    secret now; ``write_admin`` writes a new one where the CLI finds it.
    ``on_revoked`` observers hear each token's name as it stops working.
    """

    log = Logger()

    def __init__(self, key: bytes, store: ITokenStore, reactor: IReactorTime, admin: str,
                 write_admin: Callable[[str], None] = lambda secret: None,
                 max_tokens: int = 256):
        if len(key) < 16:
            raise ValueError("the token key must be at least 16 bytes")
        self._key = key
        self._store = store
        self._reactor = reactor
        self._write_admin = write_admin
        self.max_tokens = max_tokens
        self._admin = self.digest(admin)
        #: The admin token before the last rotation, while its grace lasts.
        self._old_admin: str | None = None
        self._grace: IDelayedCall | None = None
        self._named = {record.name: record for record in store.tokens()}
        self._touched: dict[str, float] = {}
        self._revoked: list[Callable[[str], None]] = []

    def digest(self, secret: str | bytes) -> str:
        """The keyed hash of ``secret``, as kept."""
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        return hmac.new(self._key, secret, hashlib.sha256).hexdigest()

    def on_revoked(self, observer: Callable[[str], None]) -> None:
        """
        Call ``observer(digest)`` whenever a token stops working (revoked, or
        rotated out): ``digest`` is its :attr:`Caller.digest`.
        """
        self._revoked.append(observer)

    # -- who is it ---------------------------------------------------------

    def identify(self, secret: bytes) -> Caller | None:
        """
        The caller whose token ``secret`` is, or None. Every kept digest is
        compared, in constant time, whichever matches.
        """
        if not secret:
            return None
        given = self.digest(secret)
        now = self._reactor.seconds()
        found: Caller | None = None
        if hmac.compare_digest(given, self._admin):
            found = Caller(ADMIN, Role.ADMIN, (), given)
        if self._old_admin is not None and hmac.compare_digest(given, self._old_admin):
            found = Caller(ADMIN, Role.ADMIN, (), given)
        for record in self._named.values():
            if hmac.compare_digest(given, record.digest) and (
                    record.expires is None or record.expires > now):
                found = Caller(record.name, record.role, record.scope, given, record.expires)
        if found is not None and found.name != ADMIN:
            self._used(found.name, now)
        return found

    def _used(self, name: str, now: float) -> None:
        """Note that token ``name`` was used; written to the store once a minute at most."""
        record = self._named[name]
        self._named[name] = attrs.evolve(record, last_used=now)
        if now - self._touched.get(name, float("-inf")) >= TOUCH_EVERY:
            self._touched[name] = now
            self._store.put_token(self._named[name])

    # -- named tokens ------------------------------------------------------

    def create(self, name: str, role: str, scope: Iterable[str] = (),
               expires_in: float | None = None) -> tuple[TokenRecord, str]:
        """
        Make token ``name``: its record and its secret (shown once, kept
        nowhere). Raise :class:`~.errors.Invalid` for a bad name, role,
        scope or expiry, :class:`TokenTaken` for a name in use.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise Invalid("name must be 1 to 64 letters, digits, '_', '.' or '-'")
        if not isinstance(role, str) or role not in {r.value for r in Role}:
            raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}")
        scope = tuple(scope)
        if not all(isinstance(item, str) and 0 < len(item) <= 256 for item in scope) or (
                len(scope) > 64):
            raise Invalid("scope must be a list of at most 64 module or service names")
        if expires_in is not None and (isinstance(expires_in, bool) or not (
                isinstance(expires_in, int | float) and 0 < expires_in <= 10 * 365 * 86400)):
            raise Invalid("expires_in must be a number of seconds above 0")
        if name == ADMIN or name in self._named:
            raise TokenTaken(f"a token named {name!r} exists already")
        if len(self._named) >= self.max_tokens:
            raise TokenTaken(f"there are {self.max_tokens} tokens already: revoke one first")
        secret = secrets.token_urlsafe(32)
        now = self._reactor.seconds()
        record = TokenRecord(name, Role(role), self.digest(secret), scope, now,
                             None if expires_in is None else now + expires_in)
        self._store.put_token(record)  # kept first: a StoreFailed changes nothing
        self._named[name] = record
        self.log.info("token {name} made ({role})", name=name, role=role)
        return record, secret

    def tokens(self) -> list[TokenRecord]:
        """Every named token, oldest first."""
        return sorted(self._named.values(), key=lambda record: record.created)

    def revoke(self, name: str) -> TokenRecord:
        """Revoke token ``name`` at once; :class:`UnknownToken` if there is none."""
        if name == ADMIN:
            raise TokenTaken("the admin token is not revoked but rotated:"
                             " POST /tokens/admin/rotate")
        record = self._named.get(name)
        if record is None:
            raise UnknownToken(name)
        self._store.remove_token(name)
        del self._named[name]
        self._touched.pop(name, None)
        self.log.info("token {name} revoked", name=name)
        self._tell_revoked(record.digest)
        return record

    def _tell_revoked(self, digest: str) -> None:
        for observer in list(self._revoked):
            try:
                observer(digest)
            except Exception:
                self.log.failure("a revocation observer failed")

    # -- the admin token ---------------------------------------------------

    def rotate(self, grace: float = 0.0) -> str:
        """
        A new admin token, written where the CLI finds it (atomically); the
        one it replaces works ``grace`` more seconds, then never again.
        Return the new secret.
        """
        if not (isinstance(grace, int | float) and 0 <= grace <= 7 * 86400):
            raise Invalid("grace must be a number of seconds from 0 to 604800")
        secret = secrets.token_urlsafe(32)
        self._write_admin(secret)  # first: if it fails, the old token stays
        old, self._admin = self._admin, self.digest(secret)
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None
        if grace > 0:
            self._old_admin = old
            self._grace = self._reactor.callLater(grace, self._grace_over)
        else:
            self._old_admin = None
            self._tell_revoked(old)
        self.log.info("admin token rotated; the old one works {grace} s more", grace=grace)
        return secret

    def _grace_over(self) -> None:
        self._grace = None
        old, self._old_admin = self._old_admin, None
        self.log.info("the admin token's grace period is over: the old one is refused")
        if old is not None:
            self._tell_revoked(old)

    def stop(self) -> None:
        """Cancel a pending end of grace, and write each token's last use."""
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None
        self._old_admin = None
        for name in list(self._touched):
            if name in self._named:
                self._store.put_token(self._named[name])
