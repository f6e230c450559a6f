"""
The daemon's end of a ready fd, on a real pipe and a MemoryReactor: read
as data comes until the worker's first line, then only when polled.
"""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactor

from turberfield_twisted.contract import READY_LINE, WATCHDOG_LINE
from turberfield_twisted.launch.readyfd import ReadyPipe


def test_read_as_it_comes_until_ready_then_only_when_polled():
    """After READY=1 the reactor stops reading the pipe: pings wait for a poll, then all come."""
    reactor, got = MemoryReactor(), []
    ours, theirs = os.pipe()
    pipe = ReadyPipe(reactor, ours, got.append)
    try:
        assert pipe in reactor.getReaders()
        os.write(theirs, READY_LINE)
        pipe.doRead()
        assert got == [READY_LINE] and pipe not in reactor.getReaders()
        os.write(theirs, WATCHDOG_LINE)
        os.write(theirs, WATCHDOG_LINE)
        assert got == [READY_LINE]
        pipe.poll()
        assert b"".join(got[1:]) == WATCHDOG_LINE * 2
        pipe.poll()  # nothing new: nothing fed, nothing blocks
        assert b"".join(got[1:]) == WATCHDOG_LINE * 2
    finally:
        os.close(theirs)
        pipe.poll()  # the end: it closes its fd
        assert pipe.fd == -1


def test_the_end_before_ready_lets_the_reactor_drop_it():
    """EOF before any line: doRead says the connection is done, and the fd is closed once lost."""
    reactor, got = MemoryReactor(), []
    ours, theirs = os.pipe()
    pipe = ReadyPipe(reactor, ours, got.append)
    os.close(theirs)
    why = pipe.doRead()
    assert why is not None and got == []
    reactor.removeReader(pipe)
    pipe.connectionLost(why)
    assert pipe.fd == -1
    pipe.close()  # twice: nothing more
