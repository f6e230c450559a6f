"""
A service of a module Slurm runs, on a Clock: accepted without ``listen``
(no shared socket: a socket can't span hosts), shown with ``listen: null``
and its relay, and its instances spread over the nodes ``sinfo`` says are
usable (``spread = nodes``: each step's ``srun --nodelist`` is the node
fewest of its siblings use), after a node loss and a scale too. No process,
no port, no sleep: the real three-node cluster is in test_slurm_nodes.py.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from _slurm_world import DEMO, World
from twisted.internet.defer import Deferred

from turberfield_twisted import JobState
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.daemon.keeper import Keeper
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.errors import ConfigError
from turberfield_twisted.launch.slurm.placement import Ran
from turberfield_twisted.launch.slurm.spread import (
    DEFAULT,
    Spread,
    choose_node,
    partitions,
    usable_nodes,
)
from turberfield_twisted.services.model import ServiceSpec

FAILURE = b"srun: error: Node failure on node7\n"


def nodelist(w: World, spawned: int) -> str | None:
    """The node the ``spawned``-th step was sent to (``--nodelist=``), if one was."""
    found = [a[11:] for a in w.reactor.spawned[spawned].args if a.startswith("--nodelist=")]
    return found[0] if found else None


def world_with_nodes() -> World:
    """A World whose Slurm launcher has asked sinfo (as it does when the daemon starts)."""
    w = World()
    w.init.launcher.launcher_of(DEMO).prepare([DEMO])
    assert w.init.slurm_spread.usable == {"batch": {"node7", "node8", "node9"},
                                          DEFAULT: {"node7", "node8", "node9"},
                                          "gpu": {"node5"}}
    return w


async def ready_on_node7(w: World) -> None:
    """grid.1 (sent to node7) reports: Slurm runs it there as step 12.0."""
    w.runner.slurm["12"] = "grid.1|node7|RUNNING"
    assert (await w.report("grid.1", step="12.0"))[0] == 202
    w.reactor.advance(0)


def test_usable_nodes_are_those_up_and_responding_by_partition():
    """sinfo's idle, mixed, allocated and completing nodes are usable; a down, drained or
    not responding (``*``) one is not; by partition, the default one (``*``) also as such."""
    out = ("a idle p*\nb mix p*\nc alloc p*\nd comp p*\ne down* p*\nf drain p*\n"
           "g idle* p*\nh mix~ p*\na idle q\nx idle q\n\n")
    assert usable_nodes(out) == {"p": {"a", "b", "c", "d", "h"}, DEFAULT: {"a", "b", "c", "d", "h"},
                                 "q": {"a", "x"}}


def test_the_partitions_a_step_names_or_the_default():
    """--partition=, --partition X, -p X and -pX (a list too); none named: the default."""
    assert partitions(["--time=5"]) == [DEFAULT]
    assert partitions(["--partition=a,b"]) == ["a", "b"]
    assert partitions(["--partition", "a"]) == partitions(["-p", "a"]) == ["a"]
    assert partitions(["-pgpu", "--qos=low"]) == ["gpu"]


@pytest_twisted.ensureDeferred
async def test_a_step_is_sent_only_to_a_node_of_its_partition():
    """slurm_args --partition=gpu: the only usable node of gpu, node5, for both instances."""
    w = World("launcher = slurm\nslurm_args = --partition=gpu\n")
    w.init.launcher.launcher_of(DEMO).prepare([DEMO])
    await w.call("POST", "/services", {"name": "grid", "module": DEMO, "instances": 2})
    assert [nodelist(w, 0), nodelist(w, 1)] == ["node5", "node5"]


def test_the_node_chosen_has_fewest_siblings_then_the_oldest_then_least_load_then_first_name():
    """Fewest siblings first, then the node of the oldest sibling, then fewest steps of any
    job, then the name; excluded nodes never; none left: None."""
    nodes = ["n1", "n2", "n3"]
    assert choose_node(nodes, [], [], {}) == "n1"
    assert choose_node(nodes, [], ["n1"], {}) == "n2"
    assert choose_node(nodes, [], ["n1"], {"n2": 4}) == "n3"
    assert choose_node(nodes, ["n3"], ["n1", "n2", "n1"], {}) == "n2"
    assert choose_node(nodes, [], ["n2", "n3", "n1"], {}) == "n2"
    assert choose_node(nodes, nodes, [], {}) is None


def test_a_rollout_of_three_on_three_nodes_ends_one_a_node():
    """Old a, b, c on n1, n2, n3, drained oldest first as each new one comes: the new ones
    take n1, n2, n3 in turn."""
    on = {"a": "n1", "b": "n2", "c": "n3"}
    members = ["a", "b", "c"]
    for new, old in (("x", "a"), ("y", "b"), ("z", "c")):
        on[new] = choose_node(["n1", "n2", "n3"], [], [on[m] for m in members], {}) or ""
        members = [m for m in members if m != old] + [new]
    assert [on["x"], on["y"], on["z"]] == ["n1", "n2", "n3"]


def test_siblings_started_at_once_go_to_different_nodes_then_round_again():
    """Instances sent before any reports where it runs are counted where they were sent:
    three go to three nodes, the fourth to a node with one; a job that does not spread,
    or whose slurm_args name nodes, is not given a node."""
    members = ["s.1", "s.2", "s.3", "s.4"]
    spread = Spread(siblings=lambda guid: [m for m in members if m != guid]
                    if guid in members else None,
                    usable={DEFAULT: frozenset({"n1", "n2", "n3"})})
    chosen = [spread.node_for(guid, [], ()) for guid in members]
    assert chosen[:3] == ["n1", "n2", "n3"] and chosen[3] in {"n1", "n2", "n3"}
    assert spread.node_for("other", [], ()) is None
    assert spread.node_for("s.1", [], ("--nodelist=n9",)) is None
    assert "s.1" not in spread.where


def test_nodes_not_known_yet_leave_the_step_to_slurm():
    """Before sinfo has answered, no node is chosen (Slurm places the step)."""
    spread = Spread(siblings=lambda guid: [])
    assert spread.node_for("s.1", [], ()) is None


@pytest_twisted.ensureDeferred
async def test_a_slurm_service_has_no_listen_and_its_instances_go_one_a_node():
    """POST /services of a Slurm module without listen: 201, shown with listen null, its
    relay and spread nodes; its three steps are sent to node7, node8 and node9."""
    w = world_with_nodes()
    code, body = await w.call("POST", "/services", {"name": "grid", "module": DEMO,
                                                   "instances": 3})
    assert code == 201, body
    code, view = await w.call("GET", "/services/grid")
    assert (view["listen"], view["relay"], view["spread"]) == (
        None, "/services/grid/proxy/", "nodes")
    await ready_on_node7(w)  # the third waits for a starting slot
    assert [nodelist(w, i) for i in range(3)] == ["node7", "node8", "node9"]
    assert w.runner.sinfo_asked >= 2  # asked again for the next steps


@pytest_twisted.ensureDeferred
async def test_instances_that_spread_wait_for_the_first_sinfo_then_go_one_a_node():
    """While the sinfo asked at the start has not answered, no instance is spawned (each
    waits); once it answers, they start, each sent to its own node."""
    w = World()
    w.runner.sinfo_held = held = Deferred()
    w.init.launcher.launcher_of(DEMO).prepare([DEMO])
    code, _ = await w.call("POST", "/services", {"name": "grid", "module": DEMO,
                                                "instances": 2})
    assert code == 201 and w.reactor.spawned == []
    assert w.init.job("grid.1").state is JobState.WAITING
    held.callback(Ran(0, w.runner.nodes, ""))
    assert [nodelist(w, 0), nodelist(w, 1)] == ["node7", "node8"]


@pytest_twisted.ensureDeferred
async def test_a_slurm_service_with_listen_or_a_bad_spread_is_refused():
    """A socket can't span hosts: listen for a Slurm module is 409 (it conflicts with the
    module's launcher); a spread that is not nodes or none is 400; nothing is made."""
    w = world_with_nodes()
    code, body = await w.call("POST", "/services", {"name": "grid", "module": DEMO,
                                                   "listen": 8000})
    assert code == 409 and "can't span hosts" in body["error"]
    code, body = await w.call("POST", "/services", {"name": "grid", "module": DEMO,
                                                   "spread": "racks"})
    assert code == 400 and "spread must be one of: nodes, none" in body["error"]
    assert (await w.call("GET", "/services"))[1]["services"] == []


@pytest_twisted.ensureDeferred
async def test_spread_none_leaves_placement_to_slurm():
    """spread = none: no step is given a node."""
    w = world_with_nodes()
    code, _ = await w.call("POST", "/services", {"name": "grid", "module": DEMO,
                                                "instances": 2, "spread": "none"})
    assert code == 201
    assert [nodelist(w, i) for i in range(2)] == [None, None]


@pytest_twisted.ensureDeferred
async def test_a_replacement_after_a_node_loss_goes_to_the_node_its_siblings_do_not_use():
    """Two instances on node7 and node8; node7 fails under grid.1: it is started again
    excluding node7 and sent to node9, where no sibling runs (not node8)."""
    w = world_with_nodes()
    await w.call("POST", "/services", {"name": "grid", "module": DEMO, "instances": 2})
    assert [nodelist(w, 0), nodelist(w, 1)] == ["node7", "node8"]
    await ready_on_node7(w)
    proc = w.reactor.spawned[0]
    proc.protocol.childDataReceived(2, FAILURE)
    proc.exit(1)
    w.reactor.advance(0)
    assert len(w.reactor.spawned) == 3
    assert "--exclude=node7" in w.reactor.spawned[2].args
    assert nodelist(w, 2) == "node9"


@pytest_twisted.ensureDeferred
async def test_scaling_down_frees_a_node_and_scaling_up_fills_it():
    """Scale 3 -> 2 drains grid.3 (node9); once its step has ended, scale back to 3 sends
    grid.4 to node9 again."""
    w = world_with_nodes()
    await w.call("POST", "/services", {"name": "grid", "module": DEMO, "instances": 3})
    await ready_on_node7(w)
    assert nodelist(w, 2) == "node9"
    assert (await w.call("PATCH", "/services/grid", {"instances": 2}))[0] == 200
    w.reactor.spawned[2].exit(0)
    w.reactor.advance(0)
    assert w.init.slurm_spread.where == {"grid.1": "node7", "grid.2": "node8"}
    assert (await w.call("PATCH", "/services/grid", {"instances": 3}))[0] == 200
    assert nodelist(w, 3) == "node9"


@pytest_twisted.ensureDeferred
async def test_an_instance_replaced_alone_is_replaced_on_its_own_node():
    """A rollout of grid.2 alone (as recycling does) on three nodes: its siblings are given
    it first, so the new instance goes to grid.2's node8, which its drain frees."""
    w = world_with_nodes()
    await w.call("POST", "/services", {"name": "grid", "module": DEMO, "instances": 3})
    await ready_on_node7(w)
    group = w.init.services.group("grid")
    group.roll_out(group.spec, replace=["grid.2"])
    assert w.init.services.spread_siblings("grid.4") == ["grid.2", "grid.1", "grid.3"]
    assert w.init.slurm_spread.node_for("grid.4", [], ()) == "node8"


@pytest.mark.parametrize(("lines", "line", "reason"), [
    ("[service:w]\nmodule = m\nspread = racks\n", 7, "must be one of: nodes, none"),
    ("[service:w]\nmodule = l\nlisten = 80\nspread = nodes\n", 8, "applies only to a service"),
    ("[service:w]\nmodule = l\n", 5, "has no 'listen' key"),
])
def test_a_bad_slurm_service_section_is_refused_at_its_line(lines, line, reason):
    """spread is nodes or none, and only for a module Slurm runs; a local one needs listen."""
    cfg = parse_config(f"[p]\n[m]\nlauncher = slurm\n[l]\n{lines}", source="f.cfg")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "p")
    assert (caught.value.line, reason in str(caught.value)) == (line, True), str(caught.value)


def test_a_slurm_service_section_without_listen_spreads_on_nodes_by_default():
    """[service:w] of a Slurm module, no listen: accepted, no address, spread nodes."""
    cfg = parse_config("[p]\n[m]\nlauncher = slurm\n[service:w]\nmodule = m\ninstances = 3\n")
    service = check_config(cfg, "p").services["w"]
    assert (service.host, service.port, service.spread, service.instances) == (
        None, None, "nodes", 3)


def test_a_slurm_service_is_kept_without_an_address(state):
    """Kept and read back from the store, a service with no listen still has none (its
    host and port columns hold "" and 0)."""
    keeper = Keeper(Store.open(state))
    try:
        keeper.keep_service(ServiceSpec("grid", DEMO, None, None, instances=3), 4)
        keeper.keep_service(ServiceSpec("web", DEMO, "::1", 8000), 1)
        [(grid, number), (web, _)] = keeper.kept_services()
        assert (grid.host, grid.port, grid.listen, grid.instances, number) == (
            None, None, None, 3, 4)
        assert web.listen == "[::1]:8000"
    finally:
        assert keeper.store is not None
        keeper.store.close()
