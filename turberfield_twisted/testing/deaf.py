"""
A fault worker that never reads its config and never listens: it just
blocks. Only its lifeline (fd 3) reaching EOF, or a signal, ends it, so it
is left behind by no initiator.

``python -P -m turberfield_twisted.testing.deaf --guid G --port P``
"""

import os
import signal

from turberfield_twisted.contract import LIFELINE_FD


def block() -> None:
    """Wait for the lifeline to close (or, without one, for a signal)."""
    try:
        while os.read(LIFELINE_FD, 1):
            pass
    except OSError:
        signal.pause()


if __name__ == "__main__":
    block()
