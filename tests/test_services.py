"""
Services on a Clock with the kit's fake launcher: instances, scale,
rollouts and their rollback, bad input. No worker process; each service's
socket is a real one bound on a free loopback port (the kit's). Each
test's docstring states its rule.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

import pytest

from turberfield_twisted.errors import (
    Invalid,
    OverMaxInstances,
    OverrideNotAllowed,
    ServiceConflict,
    UnknownModule,
    UnknownService,
)
from turberfield_twisted.jobs.job import ENDED, EventKind, JobState
from turberfield_twisted.services.model import RolloutState, ServiceSpec
from turberfield_twisted.testing.fakes import InitiatorOnClock, initiator_on_clock
from turberfield_twisted.testing.ports import free_ports

MOD = "some.worker"


@pytest.fixture
def ports() -> Any:
    held = free_ports(10)
    yield held
    held.release()


@pytest.fixture
def world(ports: Any) -> Any:
    """An Initiator on a Clock; health checks refused until a port is put ``up``."""
    made = initiator_on_clock({
        "init": {"child_port_min": 21000, "child_port_max": 21099, "ready_timeout": 10,
                 "stop_timeout": 5, "max_starting": 20, "max_instances": 8},
        MOD: {"overridable": "greeting", "backoff_initial": 1, "jitter": 0}, "kv": {}})
    made.health.up = set()

    def held(event: Any) -> None:
        """Workers end on SIGKILL only (the test ends the drained ones); a port that
        ended does not answer for the next job given it."""
        if event.kind is EventKind.STATE and event.state is JobState.STARTING:
            made.launcher.latest(event.guid).dies_on = frozenset({signal.SIGKILL})
        elif event.kind is EventKind.STATE and event.state in (*ENDED, JobState.BACKOFF):
            made.health.up.discard(event.port)  # type: ignore[union-attr]

    made.init.subscribe(held)
    made.init.startService()
    yield made
    made.init.services.close()
    for group in made.init.services.groups.values():
        group.socket.close()


def spec(ports: Any, **more: Any) -> ServiceSpec:
    """A spec of service ``web`` (two instances of MOD on the first port) but for ``more``."""
    keys: dict[str, Any] = {"name": "web", "module": MOD, "host": "127.0.0.1",
                            "port": ports.low, "instances": 2, **more}
    return ServiceSpec(**keys)


def ready_all(world: InitiatorOnClock, guids: list[str]) -> None:
    """The instances ``guids`` say they listen and answer their health check."""
    for guid in guids:
        job = world.init.job(guid)
        world.health.up.add(job.port)  # type: ignore[union-attr]
        world.launcher.latest(guid).listen()


def states(world: InitiatorOnClock, guids: list[str]) -> list[str]:
    return [world.init.job(guid).state.value for guid in guids]


def test_a_service_starts_its_instances_as_jobs_named_for_it_and_handed_its_socket(world,
                                                                                      ports):
    """
    Each instance is a job NAME.N of the service's module, with the service's name on its
    record and its events, handed the service's socket (named for it) at its spawn.
    """
    group = world.init.services.create(spec(ports, instances=3))
    assert group.members == ["web.1", "web.2", "web.3"]
    for guid in group.members:
        job = world.init.job(guid)
        assert (job.module, job.service) == (MOD, "web")
        handed = world.launcher.latest(guid).sockets
        assert [s.name for s in handed] == ["web"]
        assert handed[0].fd == group.socket.handed().fd
        assert job.as_json()["service"] == "web"
    assert {e.service for e in world.events if e.kind is EventKind.STATE} == {"web"}
    created = [e for e in world.events if e.kind is EventKind.SERVICE]
    assert [(e.name, e.guid) for e in created] == [("created", "web")]
    assert created[0].as_json()["data"] == {"listen": f"127.0.0.1:{ports.low}",
                                            "instances": 3}


def test_instance_numbers_only_grow(world, ports):
    """A number once given is never given again: scaling down and up takes new ones."""
    services = world.init.services
    services.create(spec(ports, instances=2))
    services.scale("web", 1)
    world.launcher.latest("web.2").exit(0)
    services.scale("web", 3)
    assert services.group("web").members == ["web.1", "web.3", "web.4"]
    assert states(world, ["web.2"]) == ["exited"]


def test_scale_down_drains_the_newest_first(world, ports):
    """Going from 4 to 2 sends SIGTERM to the two newest instances only."""
    services = world.init.services
    group = services.create(spec(ports, instances=4))
    ready_all(world, group.members)
    services.scale("web", 2)
    for guid in ("web.3", "web.4"):
        world.launcher.latest(guid).exit(0)
    assert group.members == ["web.1", "web.2"]
    sent = {guid: world.launcher.latest(guid).signals[:1] for guid in ("web.1", "web.2",
                                                                      "web.3", "web.4")}
    assert sent == {"web.1": [], "web.2": [], "web.3": [signal.SIGTERM],
                    "web.4": [signal.SIGTERM]}
    scaled = [e.data for e in world.events if e.kind is EventKind.SERVICE
              and e.name == "scaled"]
    assert scaled == [{"from": 4, "to": 2}]


@pytest.mark.parametrize(("count", "error"), [
    (0, Invalid), (-1, Invalid), (True, Invalid), ("3", Invalid), (2.5, Invalid),
    (9, OverMaxInstances)])
def test_a_bad_instance_count_is_refused_and_nothing_changes(world, ports, count, error):
    """0, a negative count or not a whole number: Invalid; more than max_instances:
    OverMaxInstances (403)."""
    services = world.init.services
    group = services.create(spec(ports, instances=2))
    before = (list(group.members), group.spec, len(world.launcher.spawned))
    with pytest.raises(error):
        services.scale("web", count)
    assert (list(group.members), group.spec, len(world.launcher.spawned)) == before


def test_bad_services_are_refused_whole(world, ports):
    """
    A name that is a config section's or malformed, a taken name, a count over the
    maximum, an unknown module or override, an address another process holds, scaling
    an unknown service: each refused, no socket bound and no job made.
    """
    services = world.init.services
    services.create(spec(ports, instances=1))
    jobs = set(world.init.workers)
    cases = [
        (ServiceConflict, spec(ports, name="init")),
        (ServiceConflict, spec(ports, name="kv")),
        (Invalid, spec(ports, name="a.b")),
        (ServiceConflict, spec(ports, name="web", port=ports.low + 1)),
        (OverMaxInstances, spec(ports, name="api", port=ports.low + 1, instances=9)),
        (Invalid, spec(ports, name="api", port=ports.low + 1, surge=0)),
        (UnknownModule, spec(ports, name="api", port=ports.low + 1, module="no.such")),
        (OverrideNotAllowed, spec(ports, name="api", port=ports.low + 1,
                                  overrides={"secret": "x"})),
    ]
    for error, bad in cases:
        with pytest.raises(error):
            services.create(bad)
    holder = socket.create_server(("127.0.0.1", ports.low + 2))
    try:
        with pytest.raises(ServiceConflict, match="another process listens on it"):
            services.create(spec(ports, name="api", port=ports.low + 2))
    finally:
        holder.close()
    with pytest.raises(UnknownService):
        services.scale("nope", 2)
    assert set(services.groups) == {"web"} and set(world.init.workers) == jobs
    probe = socket.create_server(("127.0.0.1", ports.low + 1))  # nothing kept it bound
    probe.close()


def test_a_rollout_with_surge_1_is_never_below_its_count_of_ready_instances(world, ports):
    """
    surge 1, max_unavailable 0: one new instance at a time, an old one drained only once a
    new one is ready: ready instances never fewer than 4, live ones never more than 5;
    done once every old one has ended, the new spec kept.
    """
    services = world.init.services
    group = services.create(spec(ports, instances=4))
    old = list(group.members)
    ready_all(world, old)
    seen: list[tuple[int, int]] = []

    def count(event: Any) -> None:
        jobs = [world.init.job(g) for g in world.init.workers if g.startswith("web.")]
        seen.append((sum(1 for j in jobs if j.state is JobState.READY),
                     sum(1 for j in jobs if j.state in (JobState.WAITING, JobState.STARTING,
                                                         JobState.READY))))

    world.init.subscribe(count)
    view = services.roll_out("web", overrides={"greeting": "hej"})
    assert view.state is RolloutState.RUNNING
    for _ in range(8):  # each round: the new instances answer, the drained old ones end
        if group.rollout is None:
            break
        ready_all(world, [g for g in group.members if g not in old])
        for guid in old:
            if world.init.job(guid).state is JobState.STOPPING:
                world.launcher.latest(guid).exit(0)
    assert group.rollout is None and group.last_rollout.state is RolloutState.DONE
    assert group.members == ["web.5", "web.6", "web.7", "web.8"]
    assert states(world, old) == ["exited"] * 4
    assert min(ready for ready, _ in seen) >= 4 and max(live for _, live in seen) <= 5
    assert dict(group.spec.overrides) == {"greeting": "hej"}
    names = [e.name for e in world.events if e.kind is EventKind.SERVICE]
    assert names == ["created", "rollout_started", "rollout_done"]


def test_max_unavailable_lets_a_rollout_drain_before_it_starts(world, ports):
    """surge 0, max_unavailable 1: an old instance is drained first, never two at once."""
    services = world.init.services
    group = services.create(spec(ports, instances=3, surge=0, max_unavailable=1))
    old = list(group.members)
    ready_all(world, old)
    services.roll_out("web")
    assert states(world, old) == ["stopping", "ready", "ready"]
    assert len(group.members) == 3  # a new one started in its place
    world.launcher.latest(old[0]).exit(0)
    ready_all(world, [group.members[-1]])
    assert states(world, old) == ["exited", "stopping", "ready"]


def test_a_new_instance_that_fails_rolls_the_rollout_back(world, ports):
    """
    A new instance that exits while starting: it is stopped, no old instance was
    signalled, the service keeps them and its spec, and the rollout has failed with the
    instance's error (its last stderr line).
    """
    services = world.init.services
    group = services.create(spec(ports, instances=2))
    old = list(group.members)
    ready_all(world, old)
    before = group.spec
    services.roll_out("web", overrides={"greeting": "hej"})
    new = group.members[-1]
    world.launcher.latest(new).say("ImportError: no module named broken", "stderr")
    world.launcher.latest(new).exit(1)
    assert group.rollout is None
    assert group.last_rollout.state is RolloutState.FAILED
    assert "ImportError: no module named broken" in group.last_rollout.reason
    assert group.members == old and group.spec == before
    assert states(world, old) == ["ready", "ready"]
    assert [world.launcher.latest(g).signals for g in old] == [[], []]
    assert world.init.job(new).state in ENDED
    failed = [e for e in world.events if e.name == "rollout_failed"]
    assert failed and "ImportError" in failed[0].data["reason"]


def test_a_new_instance_not_ready_in_time_rolls_back(world, ports):
    """A new instance not ready within ready_timeout is killed: the rollout fails, saying so."""
    services = world.init.services
    group = services.create(spec(ports, instances=1))
    ready_all(world, group.members)
    services.roll_out("web")
    world.clock.advance(10)
    assert group.last_rollout.state is RolloutState.FAILED
    assert "not ready within 10s" in group.last_rollout.reason
    assert states(world, ["web.1"]) == ["ready"]


def test_a_second_rollout_or_a_scale_while_one_runs_is_refused(world, ports):
    """While a rollout runs, another rollout and a scale are ServiceConflict (409)."""
    services = world.init.services
    group = services.create(spec(ports, instances=1))
    ready_all(world, group.members)
    services.roll_out("web")
    with pytest.raises(ServiceConflict):
        services.roll_out("web")
    with pytest.raises(ServiceConflict):
        services.scale("web", 2)
    assert group.spec.instances == 1


def test_removing_a_service_drains_its_instances_then_closes_its_socket(world, ports):
    """DELETE: every instance gets SIGTERM; the socket closes once they have ended."""
    services = world.init.services
    group = services.create(spec(ports, instances=2))
    ready_all(world, group.members)
    dead = world.init.services.remove("web")
    assert "web" not in services.groups and not group.socket.closed
    for guid in ("web.1", "web.2"):
        assert world.launcher.latest(guid).signals == [signal.SIGTERM]
        world.launcher.latest(guid).exit(0)
    assert dead.called and group.socket.closed


def _config(ports: Any, declared: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = {
        "init": {"child_port_min": 21000, "child_port_max": 21099, "max_instances": 8},
        MOD: {"overridable": "greeting"}}
    if declared:
        config["service:api"] = {"module": MOD, "instances": 2, "listen": str(ports.low + 3),
                                 "greeting": "hi"}
    return config


def test_services_are_kept_and_come_back_with_their_count_and_numbers(ports, state):
    """
    A restarted daemon makes each kept service again, with its instance count and
    numbers that go on from where they were; a declared one from its section.
    """
    from turberfield_twisted.daemon.store import Store

    store = Store.open(state)
    try:
        first = initiator_on_clock(_config(ports, declared=True), store=store)
        first.init.startService()
        first.init.services.restore()
        services = first.init.services
        services.create(spec(ports, instances=3, overrides={"greeting": "hej"}))
        services.scale("web", 2)
        assert services.group("api").members == ["api.1", "api.2"]
        first.init.services.close()
        first.init.services.release()

        again = initiator_on_clock(_config(ports, declared=True), store=store)
        again.init.startService()
        again.init.services.restore()
        web, api = again.init.services.group("web"), again.init.services.group("api")
        assert (web.spec.instances, web.members) == (2, ["web.4", "web.5"])
        assert dict(web.spec.overrides) == {"greeting": "hej"} and not web.spec.declared
        assert api.spec.declared and api.members == ["api.3", "api.4"]
        assert dict(again.init.job("api.3").overrides) == {"greeting": "hi"}
        again.init.services.close()
        again.init.services.release()
    finally:
        store.close()


def test_metrics_count_ready_instances_and_rollouts_by_outcome(world, ports):
    """proactor_service_instances(_ready){service} now; rollouts by service and outcome."""
    from turberfield_twisted.daemon.metrics import Metrics

    metrics = Metrics(world.init, services=world.init.services)
    services = world.init.services
    group = services.create(spec(ports, instances=2))
    ready_all(world, group.members[:1])
    services.roll_out("web")
    world.clock.advance(10)  # its new instance is not ready in time: failed
    text = metrics.render()[0].decode()
    assert 'proactor_service_instances{service="web"} 2.0' in text
    assert 'proactor_service_instances_ready{service="web"} 1.0' in text
    assert 'proactor_service_rollouts_total{outcome="failed",service="web"} 1.0' in text
    assert 'proactor_service_rollouts_total{outcome="done",service="web"} 0.0' in text
    assert 'proactor_worker_events_total{module="some.worker"} 0.0' in text
    metrics.close()


def test_an_instance_the_job_table_forgot_is_dropped_when_scaled_away(world, ports):
    """
    An instance stopped by its operator and then forgotten (max_exited) is still one of
    the service's until a scale drains it: scaling down just drops it, no error.
    """
    services = world.init.services
    group = services.create(spec(ports, instances=2))
    world.init.stop("web.2")
    world.launcher.latest("web.2").exit(0)
    world.init.forget_ended(keep=0)
    assert "web.2" not in world.init.workers and group.members == ["web.1", "web.2"]
    services.scale("web", 1)
    assert group.members == ["web.1"] and states(world, ["web.1"]) == ["starting"]


def test_once_the_daemon_stops_every_change_of_a_service_is_refused(world, ports):
    """After begin_stopping: make, scale, roll out and remove are DaemonStopping (503);
    a rollout that ran stops where it was, failed, saying why."""
    from turberfield_twisted.errors import DaemonStopping

    services = world.init.services
    group = services.create(spec(ports, instances=1))
    ready_all(world, group.members)
    services.roll_out("web")
    world.init.begin_stopping()
    assert group.last_rollout.state is RolloutState.FAILED
    assert group.last_rollout.reason == "the daemon stopped"
    for change in (lambda: services.create(spec(ports, name="api", port=ports.low + 1)),
                   lambda: services.scale("web", 2), lambda: services.roll_out("web"),
                   lambda: services.remove("web")):
        with pytest.raises(DaemonStopping):
            change()
    assert set(services.groups) == {"web"} and group.spec.instances == 1
