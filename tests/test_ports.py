"""next_port: the lowest free port of the initiator's child range."""

import socket

import pytest

from turberfield_twisted import Initiator, NoFreePort
from turberfield_twisted.launch.ports import next_port, port_in_use
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.ports import free_ports


def test_lowest_port_of_range():
    """With nothing taken, the first port of the range is chosen."""
    cfg = initiator_config(low=23000, high=23009)
    assert Initiator.next_port(cfg, "init") == 23000


def test_listen_ports_of_every_section_are_skipped():
    """A port that any section listens on is never handed out."""
    cfg = initiator_config(low=23000, high=23009, extra="""
        [job-a]
        listen_port = 23000
        [job-b]
        listen_port = 23001
        """)
    assert Initiator.next_port(cfg, "init") == 23002


def test_busy_ports_are_skipped():
    """Ports named in ``busy`` are skipped."""
    cfg = initiator_config(low=23000, high=23009)
    assert Initiator.next_port(cfg, "init", busy={23000, 23001, 23003}) == 23002


def test_exhausted_range_raises():
    """When every port is taken, NoFreePort says which range, never None."""
    cfg = initiator_config(low=23000, high=23001, extra="""
        [job-a]
        listen_port = 23000
        """)
    with pytest.raises(NoFreePort, match="23000-23001"):
        Initiator.next_port(cfg, "init", busy={23001})


def test_default_busy_is_not_shared_between_calls():
    """The default ``busy`` is never mutated, so calls don't leak into each other."""
    cfg = initiator_config(low=23000, high=23009)
    assert Initiator.next_port(cfg, "init") == 23000
    assert Initiator.next_port(cfg, "init") == 23000


def test_port_held_by_another_socket_is_skipped():
    """With a probe, a port some other socket holds on the host is skipped."""
    with free_ports(size=10) as block, socket.socket() as held:  # port + 1: free, and ours
        port = block.low
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listener would
        held.bind(("127.0.0.1", port))
        held.listen()
        assert port_in_use("127.0.0.1", port)
        cfg = initiator_config(low=port, high=port + 1)
        chosen = next_port(cfg, "init", in_use=lambda p: port_in_use("127.0.0.1", p))
    assert chosen == port + 1


def test_preferred_port_comes_first_when_free():
    """``prefer`` (a restart's last port) wins over lower ports, but only if free and in range."""
    cfg = initiator_config(low=23000, high=23009, extra="""
        [job-a]
        listen_port = 23005
        """)
    assert next_port(cfg, "init", prefer=23004) == 23004
    assert next_port(cfg, "init", prefer=23005) == 23000
    assert next_port(cfg, "init", busy={23004}, prefer=23004) == 23000
    assert next_port(cfg, "init", prefer=24000) == 23000
    assert next_port(cfg, "init", in_use=lambda p: p == 23004, prefer=23004) == 23000
