"""
Start order: a job that requires others is spawned only once each of them
is ready. It waits in ``waiting``, holding no starting slot and blocking
no one. On a Clock with a fake launcher.
"""

from __future__ import annotations

from test_lifecycle import World

from turberfield_twisted.jobs.job import JobState


class Ordered(World):
    """A World whose lifecycle's gate looks at the jobs made here, by guid."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.jobs = {}
        self.lifecycle._gate = self.gate
        self.lifecycle.admission._gate = self.gate

    def gate(self, job):
        return all(self.jobs[name].state is JobState.READY for name in job.requires)

    def chain(self, length):
        """``length`` jobs, each requiring the one before it, started in that order."""
        jobs = [self.make()]
        for _ in range(length - 1):
            jobs.append(self.make(requires=[jobs[-1].guid]))
        return jobs

    def make(self, requires=(), start=True):
        job = self.new(start=False)
        job.requires = tuple(requires)
        self.jobs[job.guid] = job
        if start:
            self.lifecycle.start(job, new=True)
        return job


def spawned(w):
    return [worker.guid for worker in w.launcher.spawned]


def test_a_job_is_spawned_only_once_what_it_requires_is_ready():
    """b requires a: b waits while a starts, and is spawned when a is ready."""
    w = Ordered()
    a, b = w.chain(2)
    assert (a.state, b.state) == (JobState.STARTING, JobState.WAITING)
    assert spawned(w) == [a.guid]
    w.clock.advance(2)
    assert spawned(w) == [a.guid]
    w.healthy(a)
    assert b.state is JobState.STARTING and spawned(w) == [a.guid, b.guid]
    assert b.started == 2


def test_a_blocked_job_holds_no_slot_and_blocks_no_one():
    """With one slot: b (blocked on a) lets c start before it; b goes once a is ready and
    a slot is free."""
    w = Ordered(slots=1)
    a = w.make()
    b = w.make(requires=[a.guid])
    c = w.make()
    assert spawned(w) == [a.guid]
    w.healthy(a)
    assert spawned(w) == [a.guid, c.guid]  # c was waiting for the slot before b could go
    assert b.state is JobState.WAITING
    w.healthy(c)
    assert spawned(w) == [a.guid, c.guid, b.guid]


def test_a_chain_starts_in_order():
    """c requires b requires a: each is spawned after the one before is ready."""
    w = Ordered()
    a, b, c = w.chain(3)
    w.healthy(a)
    assert spawned(w) == [a.guid, b.guid] and c.state is JobState.WAITING
    w.healthy(b)
    assert spawned(w) == [a.guid, b.guid, c.guid]


def test_a_blocked_job_can_be_stopped():
    """Stopping a job that waits for another ends it; it is never spawned."""
    w = Ordered()
    a, b = w.chain(2)
    w.lifecycle.stop(b)
    assert b.state is JobState.EXITED and w.lifecycle.admission.blocked == []
    w.healthy(a)
    assert spawned(w) == [a.guid]


def test_requires_orders_starts_only():
    """Once started, a job keeps running if what it requires crashes; when it restarts,
    it waits again for its requirements."""
    w = Ordered()
    a, b = w.chain(2)
    w.healthy(a)
    w.healthy(b)
    w.worker(a).exit(1)
    assert (a.state, b.state) == (JobState.BACKOFF, JobState.READY)
    w.worker(b).exit(1)
    w.clock.advance(1)  # both back off 1 s: a starts, b waits for it
    assert (a.state, b.state) == (JobState.STARTING, JobState.WAITING)
    w.healthy(a)
    assert b.state is JobState.STARTING
