"""sd_notify: one datagram to $NOTIFY_SOCKET, nothing when it is unset."""

from __future__ import annotations

import os
import socket

from twisted.logger import capturedLogs

from turberfield_twisted.daemon.notify import sd_notify


def test_the_message_goes_to_the_socket_named_by_notify_socket(tmp_path):
    """A real datagram socket bound by the test gets the message as sent."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert sd_notify("READY=1\nSTATUS=ready", {"NOTIFY_SOCKET": path}) is True
        assert server.recv(4096) == b"READY=1\nSTATUS=ready"


def test_an_abstract_socket_is_reached_by_its_at_sign_name():
    """NOTIFY_SOCKET=@name is the abstract namespace, as systemd gives it."""
    name = f"turberfield-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert server.recv(4096) == b"STOPPING=1"


def test_nothing_is_sent_without_notify_socket():
    """Unset or empty: nothing happens, nothing fails."""
    assert sd_notify("READY=1", {}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": ""}) is False


def test_a_socket_that_is_not_there_is_logged_not_raised(tmp_path):
    """systemd gone: a warning, and the daemon goes on."""
    with capturedLogs() as events:
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "none")}) is False
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False
    assert len(events) == 2
