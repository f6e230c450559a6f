"""
A Slurm node lost under a job, on a Clock: ``srun`` says the node failed,
the job's Slurm job is cancelled (fenced) before the lifecycle hears of the
exit, and the job starts again without that node; a report from the fenced
Slurm job is refused; a node that failed ``node_failures`` jobs within
``node_failure_window`` is excluded for every job for ``node_exclude_for``
(:class:`NodeBook`, ``GET /slurm/nodes``). No process, no port, no sleep:
the real three-node cluster is in test_slurm_nodes.py.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from _slurm_world import DEMO, SLURM, World, config
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from turberfield_twisted import JobState
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.errors import ConfigError
from turberfield_twisted.launch.slurm.nodes import NodeBook, merge_options
from turberfield_twisted.launch.slurm.placement import Ran

FAILURE = b"srun: error: Node failure on node7\n"


async def ready_on_node7(w: World) -> str:
    guid = await w.init.launch(DEMO, guid="g1")
    assert (await w.report(guid, step="12.0"))[0] == 202
    return guid


def lose_node7(w: World, spawned: int = 0) -> None:
    """srun (the guard's stderr) says node7 failed, then exits."""
    proc = w.reactor.spawned[spawned]
    proc.protocol.childDataReceived(2, FAILURE)
    proc.exit(1)


@pytest_twisted.ensureDeferred
async def test_a_node_failure_fences_the_slurm_job_before_the_job_starts_again_without_it():
    """srun's 'Node failure on node7': scancel of Slurm job 12 first; only once it answered
    is the exit a failure (last_error names the node) and the job started again, with
    --exclude=node7."""
    w = World()
    guid = await ready_on_node7(w)
    assert w.init.job(guid).process.node == "node7"
    w.runner.held = Deferred()
    lose_node7(w)
    w.reactor.advance(0)
    assert w.runner.commands == [["/usr/bin/scancel", "12"]]
    job = w.init.job(guid)
    assert job.state is JobState.READY and len(w.reactor.spawned) == 1  # not yet told
    held, w.runner.held = w.runner.held, None
    held.callback(Ran(0, "", ""))
    w.reactor.advance(0)  # the first restart is at once
    assert job.state is JobState.STARTING and job.restarts == 1
    assert "Slurm node node7 failed (srun: error: Node failure on node7)" in job.last_error
    assert "--exclude=node7" in w.reactor.spawned[1].args
    code, body = await w.call("GET", "/slurm/nodes")
    [node] = body["nodes"]
    assert (code, node["name"], node["excluded"], node["excluded_for"]) == (
        200, "node7", False, ["g1"])


@pytest_twisted.ensureDeferred
async def test_a_late_report_from_a_fenced_slurm_job_is_refused():
    """After the fence, a report naming Slurm job 12's step is 409 (it was cancelled); the
    new Slurm job's report, from its own node, holds."""
    w = World()
    guid = await ready_on_node7(w)
    lose_node7(w)
    w.reactor.advance(0)
    code, body = await w.report(guid, step="12.0")
    assert code == 409 and "Slurm job 12 of job g1 was fenced" in body["error"]
    w.runner.slurm["13"] = "g1|node8|RUNNING"
    assert (await w.report(guid, step="13.0", host="10.0.0.8"))[0] == 202
    job = w.init.job(guid)
    assert (job.state, job.host, job.process.node) == (JobState.READY, "10.0.0.8", "node8")


@pytest_twisted.ensureDeferred
async def test_a_fence_that_does_not_answer_lets_the_restart_go_on_after_its_timeout():
    """scancel never answers: after FENCE_TIMEOUT the restart goes on (the node excluded)."""
    from turberfield_twisted.launch.slurm.process import FENCE_TIMEOUT

    w = World()
    guid = await ready_on_node7(w)
    w.runner.held = Deferred()
    lose_node7(w)
    w.reactor.advance(FENCE_TIMEOUT)
    w.reactor.advance(0)
    job = w.init.job(guid)
    assert job.restarts == 1 and "--exclude=node7" in w.reactor.spawned[1].args


@pytest_twisted.ensureDeferred
async def test_with_node_failures_1_one_failure_excludes_the_node_for_every_job():
    """node_failures = 1: the first job lost on node7 excludes it for every job's next step,
    as GET /slurm/nodes says, with why and until when."""
    w = World()
    w.init.cfg.set("init", "node_failures", "1")
    w.init.cfg.set("init", "node_exclude_for", "30")
    guid = await ready_on_node7(w)
    lose_node7(w)
    w.reactor.advance(0)
    other = await w.init.launch(DEMO, guid="g2")
    assert "--exclude=node7" in w.reactor.spawned[-1].args and other == "g2"
    _, body = await w.call("GET", "/slurm/nodes")
    [node] = body["nodes"]
    assert node["excluded"] and node["until"] == w.reactor.seconds() + 30
    assert node["reason"].startswith("1 jobs failed on it within 600s; last: Slurm node node7")
    assert guid in node["excluded_for"]


def test_a_node_is_excluded_for_all_after_enough_failures_within_the_window_until_cooled():
    """Two failures 60 s apart (window 100): excluded for every job for 50 s; the jobs it
    failed keep it excluded after; a failure older than the window does not count."""
    clock = Clock()
    book = NodeBook(clock.seconds, lambda: (2, 100.0, 50.0))
    assert not book.failed("a", "n1", "lost") and book.excluded("b") == []
    clock.advance(60)
    assert book.failed("b", "n1", "lost") and book.excluded("c") == ["n1"]
    clock.advance(50)
    assert book.excluded("c") == [] and book.excluded("a") == ["n1"]
    clock.advance(100)
    assert not book.failed("c", "n1", "lost") and book.excluded("d") == []


def test_excluded_nodes_join_an_exclude_of_the_modules_slurm_args():
    """One --exclude (srun takes the last): the module's nodes, then the failed ones."""
    assert merge_options(("--time=5", "--exclude=n9"), ["n1", "n9"]) == (
        "--time=5", "--exclude=n9,n1")
    assert merge_options(("--time=5",), []) == ("--time=5",)


@pytest.mark.parametrize("line", ["node_failures = 0", "node_failure_window = soon",
                                  "node_exclude_for = -1"])
def test_a_bad_node_policy_is_refused_naming_its_key(line):
    """node_failures (at least 1), node_failure_window and node_exclude_for (seconds)."""
    cfg = config(SLURM)
    key, _, value = line.partition(" = ")
    cfg.set("init", key, value)
    with pytest.raises(ConfigError, match=key):
        check_config(cfg, "init")


@pytest_twisted.ensureDeferred
async def test_a_forgotten_job_no_longer_excludes_its_failed_node():
    """The job that node7 failed is stopped and forgotten: GET /slurm/nodes no longer lists
    it for node7 (the node's failure within the window stays)."""
    w = World()
    guid = await ready_on_node7(w)
    lose_node7(w)
    w.reactor.advance(0)
    w.init.stop(guid)
    w.reactor.spawned[1].exit(0)
    assert (await w.call("POST", f"/jobs/{guid}/forget"))[0] == 200
    _, body = await w.call("GET", "/slurm/nodes")
    [node] = body["nodes"]
    assert node["excluded_for"] == [] and [f["guid"] for f in node["failures"]] == ["g1"]
