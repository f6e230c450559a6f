"""What the relay changes on the way through: a worker's Location, kept under its job's proxy."""

from __future__ import annotations

import pytest

from turberfield_twisted.http.rewrite import under_proxy

ASKED = b"http://127.0.0.1:7000/dir/here?q=1"
UNDER = "/jobs/g-1/proxy"


@pytest.mark.parametrize(("location", "relayed"), [
    (b"/x", f"{UNDER}/x"),
    (b"x?y=1#z", f"{UNDER}/dir/x?y=1#z"),
    (b"../../../up", f"{UNDER}/up"),
    (b"?page=2", f"{UNDER}/dir/here?page=2"),
    (b"http://127.0.0.1:7000/a", f"{UNDER}/a"),
    (b"HTTP://127.0.0.1:7000", f"{UNDER}/"),
    (b"http://127.0.0.1:7000/a b/\xc3\xa9", f"{UNDER}/a%20b/%C3%83%C2%A9"),
    (b"/\\evil.example", f"{UNDER}/%5Cevil.example"),
    (b" //other.example/x", None),
    (b"//other.example/x", None),
    (b"http://other.example/x", None),
    (b"https:other.example", None),
    (b"https://127.0.0.1:7000/x", None),
    (b"http://127.0.0.1:7001/x", None),
    (b"http://localhost:7000/x", None),
    (b"http://127.0.0.1:99999/x", None),
    (b"javascript:alert(1)", None),
    (b"/%2e%2e/%2E%2E/health", None),
])
def test_a_location_on_the_workers_origin_goes_under_its_proxy_and_no_other(location, relayed):
    """A Location the worker's own origin holds is a path under its job's proxy; others: None."""
    wanted = relayed.encode() if relayed is not None else None
    assert under_proxy(location, "g-1", ASKED) == wanted


def test_an_ipv6_worker_is_its_own_origin():
    """A worker on [::1] is the origin of its own absolute URLs (the address compared as text)."""
    asked = b"http://[::1]:7000/"
    assert under_proxy(b"http://[0:0::1]:7000/a", "g", asked) is None  # not the same text
    assert under_proxy(b"http://[::1]:7000/a", "g", asked) == b"/jobs/g/proxy/a"
