"""
A phase of liveness checks on a Clock: its moments on the clock's grid of
the interval, the judge ``timeout`` after each ask, members joining and
leaving, and its one timer. No processes, no sleeps.
"""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock

from turberfield_twisted.jobs.livephase import Phase


@attrs.define
class Rig:
    clock: Clock
    phase: Phase[str]
    asked: list[tuple[float, list[str]]] = attrs.field(factory=list)
    judged: list[tuple[float, list[str]]] = attrs.field(factory=list)


def rig(timeout: float | None = 0.5, slot: float = 0.3, start: float = 0.0) -> Rig:
    clock = Clock()
    clock.advance(start)
    asked: list[tuple[float, list[str]]] = []
    judged: list[tuple[float, list[str]]] = []
    phase: Phase[str] = Phase(clock, 1.0, slot, timeout,
                              lambda members, now: asked.append((now, members)),
                              lambda members: judged.append((clock.seconds(), members)), 0.1)
    return Rig(clock, phase, asked, judged)


def test_members_are_asked_on_the_grid_and_judged_timeout_later():
    """Asks fall slot past each whole interval; each is judged timeout after its grid moment."""
    r = rig(start=10.05)
    r.phase.join("a", "a")
    r.phase.join("b", "b")
    r.clock.pump([0.25, 0.5, 0.5, 0.5])  # 10.3, 10.8, 11.3, 11.8
    assert [(round(t, 6), m) for t, m in r.asked] == [(10.3, ["a", "b"]), (11.3, ["a", "b"])]
    assert [(round(t, 6), m) for t, m in r.judged] == [(10.8, ["a", "b"]), (11.8, ["a", "b"])]


def test_one_who_joins_between_ask_and_judge_is_first_asked_at_the_next_moment():
    """Only those asked are judged: a member joining after the ask waits for the next one."""
    r = rig()
    r.phase.join("a", "a")
    r.clock.advance(0.3)
    r.phase.join("b", "b")
    r.clock.pump([0.5, 0.5])
    assert r.judged[0][1] == ["a"] and r.asked[1][1] == ["a", "b"]


def test_an_ask_made_late_is_judged_a_whole_timeout_after_it():
    """An ask run late by more than a grid step (a busy daemon) still gets its whole timeout."""
    r = rig(slot=0.0)
    r.phase.join("a", "a")
    r.clock.advance(0.3)  # the moment at 0 runs at 0.3
    assert r.asked[0][0] == 0.3 and r.judged == []
    r.clock.advance(0.49)
    assert r.judged == []
    r.clock.advance(0.01)
    assert [round(t, 6) for t, _ in r.judged] == [0.8]


def test_a_phase_without_a_timeout_has_one_moment_an_interval():
    """With no timeout (watchdog checks) a moment asks, and nothing is judged later."""
    r = rig(timeout=None)
    r.phase.join("a", "a")
    r.clock.pump([0.3, 1, 1])
    assert len(r.asked) == 3 and r.judged == [] and len(r.clock.getDelayedCalls()) == 1


def test_its_timer_is_one_and_stops_when_the_last_member_leaves():
    """However many members, one delayed call; none once the last has left."""
    r = rig()
    for key in "abcde":
        r.phase.join(key, key)
    for _ in range(6):
        assert len(r.clock.getDelayedCalls()) == 1
        r.clock.advance(0.25)
    assert not r.phase.leave("a")
    for key in "bcde":
        r.phase.leave(key)
    assert r.clock.getDelayedCalls() == []
