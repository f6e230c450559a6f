"""
Every transition of a job's state machine, declared once: (state, input)
-> next state in :data:`TRANSITIONS`. :class:`~.lifecycle.Lifecycle`
drives jobs through it.

::

        launch / queue          spawn              healthy
    ------------------> waiting ------> starting ---------> ready
                         |  ^  |           |  |               |  |
                   stop  |  |  | give_up   |  | port_taken    |  | finish
                         v  |  v           |  +--> waiting    |  +------> exited
                    exited  | failed       |                  |
                            |              | stop             | stop
                      queue |              v                  v
                            |           stopping <------------+
                            |              | exit
                            |              v
           exited, failed --+           exited
           backoff ---------+

    starting, ready --crash--> backoff --(delay)--> queue --> waiting
    starting, ready --give_up--> failed      backoff --stop--> exited
                                             backoff --give_up--> failed

A job that ends unasked goes to ``backoff`` (its restart policy says when
it starts again) or ``failed`` (given up). Each transition emits one
:class:`~turberfield_twisted.jobs.job.JobEvent`; an input with no transition
from the job's state is refused and logged, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from turberfield_twisted.jobs.job import JobState

__all__ = ["TRANSITIONS", "Input"]

class Input(StrEnum):
    """What can happen to a job."""

    LAUNCH = "launch"  #: a new job asks to start
    QUEUE = "queue"  #: an ended or backed-off job asks to start again
    SPAWN = "spawn"  #: it was admitted and its process started
    HEALTHY = "healthy"  #: its health check answered
    STOP = "stop"  #: it was asked to stop
    EXIT = "exit"  #: its process ended after it was asked to stop
    CRASH = "crash"  #: its process ended unasked; it starts again after a delay
    PORT_TAKEN = "port_taken"  #: it exited 75 while starting: it starts again on another port
    GIVE_UP = "give_up"  #: it ended unasked for good, or could not be started
    FINISH = "finish"  #: it ended unasked, cleanly, and its policy leaves it down


_W, _S, _R, _P = JobState.WAITING, JobState.STARTING, JobState.READY, JobState.STOPPING


_E, _B, _F = JobState.EXITED, JobState.BACKOFF, JobState.FAILED


#: Every transition: (state, input) -> next state. Nothing else sets a state.
TRANSITIONS: Mapping[tuple[JobState, Input], JobState] = MappingProxyType({
    (_W, Input.LAUNCH): _W,
    (_E, Input.QUEUE): _W,
    (_F, Input.QUEUE): _W,
    (_B, Input.QUEUE): _W,
    (_W, Input.SPAWN): _S,
    (_W, Input.STOP): _E,
    (_W, Input.GIVE_UP): _F,
    (_S, Input.HEALTHY): _R,
    (_S, Input.STOP): _P,
    (_S, Input.CRASH): _B,
    (_S, Input.GIVE_UP): _F,
    (_S, Input.PORT_TAKEN): _W,
    (_R, Input.STOP): _P,
    (_R, Input.CRASH): _B,
    (_R, Input.GIVE_UP): _F,
    (_R, Input.FINISH): _E,
    (_P, Input.EXIT): _E,
    (_B, Input.STOP): _E,
    (_B, Input.GIVE_UP): _F,
})
