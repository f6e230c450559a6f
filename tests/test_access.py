"""
The access rules on their own (Clock, memory records): tokens and their roles, the
admin token's rotation, the throttle, the audit trail, the listening check.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.records import IAuditStore, ITokenStore, MemoryRecords
from turberfield_twisted.access.roles import Forbidden, Role
from turberfield_twisted.access.throttle import Throttle
from turberfield_twisted.access.tls import InsecureListen, check_listen, parse_endpoint
from turberfield_twisted.access.tokens import ADMIN, TokenBook, TokenTaken, UnknownToken
from turberfield_twisted.errors import Invalid

KEY = b"k" * 32


def book(clock: Clock | None = None, records: MemoryRecords | None = None,
         written: list[str] | None = None) -> TokenBook:
    return TokenBook(KEY, records or MemoryRecords(), clock or Clock(), "the-admin",
                     write_admin=(written if written is not None else []).append)


def test_the_memory_records_provide_both_store_interfaces():
    """The fake store is checked against the interfaces the daemon's store provides."""
    records = MemoryRecords()
    assert verifyObject(ITokenStore, records) and verifyObject(IAuditStore, records)


def test_roles_are_ordered_and_a_refusal_names_the_role_needed():
    """viewer < operator < admin; the 403 message names the role needed."""
    assert Role.ADMIN.allows(Role.OPERATOR) and not Role.VIEWER.allows(Role.OPERATOR)
    assert str(Forbidden("POST /jobs", Role.OPERATOR)) == "POST /jobs needs the operator role"


def test_a_named_token_is_kept_as_a_keyed_hash_and_identifies_its_caller():
    """The secret is shown once and kept nowhere; the store holds its HMAC only."""
    records = MemoryRecords()
    tokens = book(records=records)
    _, secret = tokens.create("ci", "operator", ["demo.mod"])
    assert secret not in repr(records.tokens()) and records.tokens()[0].digest != secret
    caller = tokens.identify(secret.encode())
    assert caller is not None and (caller.name, caller.role) == ("ci", Role.OPERATOR)
    assert caller.may_touch("demo.mod") and not caller.may_touch("other")
    assert tokens.identify(b"wrong") is None and tokens.identify(b"") is None
    assert tokens.identify(b"the-admin").role is Role.ADMIN  # type: ignore[union-attr]


def test_bad_names_roles_and_taken_names_are_refused():
    """A token's name, role, scope and expiry are checked; 'admin' and a taken name refused."""
    tokens = book()
    for name, role in (("", "viewer"), ("a b", "viewer"), ("x", "root")):
        with pytest.raises(Invalid):
            tokens.create(name, role)
    for expires_in in (-1, True):  # JSON true is no number of seconds (bool is an int)
        with pytest.raises(Invalid):
            tokens.create("x", "viewer", expires_in=expires_in)
    tokens.create("x", "viewer")
    for name in ("x", ADMIN):
        with pytest.raises(TokenTaken):
            tokens.create(name, "viewer")


def test_an_expired_token_is_refused():
    """Past its expiry a token identifies nobody."""
    clock = Clock()
    tokens = book(clock)
    _, secret = tokens.create("short", "viewer", expires_in=10)
    assert tokens.identify(secret.encode()) is not None
    clock.advance(10)
    assert tokens.identify(secret.encode()) is None


def test_a_revoked_token_is_refused_at_once_and_its_observers_told():
    """Revoking tells the observers the token's digest (its streams close)."""
    tokens = book()
    told: list[str] = []
    tokens.on_revoked(told.append)
    _, secret = tokens.create("gone", "viewer")
    digest = tokens.identify(secret.encode()).digest  # type: ignore[union-attr]
    tokens.revoke("gone")
    assert tokens.identify(secret.encode()) is None and told == [digest]
    with pytest.raises(UnknownToken):
        tokens.revoke("gone")


def test_a_rotated_admin_token_without_grace_is_refused_at_once():
    """rotate(0): the new one is written and works; the old one never again."""
    written: list[str] = []
    tokens = book(written=written)
    new = tokens.rotate(0)
    assert written == [new]
    assert tokens.identify(b"the-admin") is None and tokens.identify(new.encode()) is not None


def test_a_rotated_admin_token_works_for_its_grace_then_never():
    """rotate(grace): the old token works grace seconds more, then is refused."""
    clock = Clock()
    tokens = book(clock)
    tokens.rotate(30)
    clock.advance(29)
    assert tokens.identify(b"the-admin") is not None
    clock.advance(1)
    assert tokens.identify(b"the-admin") is None


def test_last_use_is_written_at_most_once_a_minute():
    """A token's last use is kept in memory, written to the store once a minute at most."""
    clock, records = Clock(), MemoryRecords()
    tokens = book(clock, records)
    _, secret = tokens.create("t", "viewer")
    clock.advance(5)
    tokens.identify(secret.encode())
    assert records.tokens()[0].last_used == 5
    clock.advance(5)
    tokens.identify(secret.encode())
    assert records.tokens()[0].last_used == 5 and tokens.tokens()[0].last_used == 10
    tokens.stop()
    assert records.tokens()[0].last_used == 10


def test_the_throttle_waits_after_a_run_of_failures_doubling_and_capped():
    """allowed failures, then base seconds, doubled per further failure, up to cap."""
    clock = Clock()
    throttle = Throttle(clock, allowed=3, base=1, cap=4)
    for _ in range(2):
        throttle.failed("a")
    assert throttle.retry_after("a") is None
    throttle.failed("a")
    assert throttle.retry_after("a") == 1
    clock.advance(1)
    throttle.failed("a")
    assert throttle.retry_after("a") == 2
    clock.advance(2)
    for _ in range(5):
        throttle.failed("a")
    assert throttle.retry_after("a") == 4
    assert throttle.retry_after("b") is None  # another address is never slowed
    throttle.succeeded("a")
    assert throttle.retry_after("a") is None


def test_the_throttle_remembers_a_bounded_number_of_addresses():
    """Past max_addresses, the least recently failed is forgotten."""
    throttle = Throttle(Clock(), max_addresses=2)
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert len(throttle) == 2


def test_the_audit_trail_keeps_changes_and_refusals_bounded_and_tells_observers():
    """Reads that succeed are not kept; the oldest past keep are dropped and counted."""
    records = MemoryRecords()
    trail = AuditTrail(records, Clock(), keep=2)
    heard: list[object] = []
    trail.subscribe(heard.append)
    assert trail.record("v", "viewer", "127.0.0.1", "GET", "/jobs", 200) is None
    for status in (401, 403, 201):
        trail.record("t", "operator", "127.0.0.1", "POST", "/jobs", status)
    kept, dropped = trail.last(10)
    assert [r.status for r in kept] == [403, 201] and dropped == 1 and len(heard) == 3


@pytest.mark.parametrize(("endpoint", "insecure", "refused"), [
    ("tcp:8080:interface=127.0.0.1", False, False),
    ("tcp6:8080:interface=\\:\\:1", False, False),
    ("tcp:8080:interface=0.0.0.0", False, True),
    ("tcp:8080", False, True),
    ("tcp:0.0.0.0:8080", False, True),  # not a valid endpoint: refused before Twisted reads it
    ("tcp6:8080", False, True),
    ("tcp:8080:interface=0.0.0.0", True, False),
    ("ssl:8443:privateKey=k.pem:certKey=c.pem", False, False),
    ("unix:/run/proactor.sock", False, False),
])
def test_plain_listening_off_loopback_is_refused_unless_the_operator_says_so(
        endpoint, insecure, refused):
    """Off loopback without TLS: refused naming insecure_listen, or a warning if it is true."""
    if refused:
        with pytest.raises(InsecureListen, match="insecure_listen"):
            check_listen(endpoint, insecure)
    else:
        warning = check_listen(endpoint, insecure)
        assert (warning is not None) == insecure


def test_client_certificates_need_an_ssl_endpoint_and_strings_split_as_twisted_does():
    """tls_client_ca with a plain endpoint is refused; escaped colons stay in a value."""
    with pytest.raises(InsecureListen, match="tls_client_ca"):
        check_listen("tcp:8080:interface=127.0.0.1", False, client_ca="ca.pem")
    parsed = parse_endpoint("ssl:8443:privateKey=/k\\:x.pem:interface=127.0.0.1")
    assert parsed.tls and parsed.args == ("8443",)
    assert parsed.options == {"privateKey": "/k:x.pem", "interface": "127.0.0.1"}
