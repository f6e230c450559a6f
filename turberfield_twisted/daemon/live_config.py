"""
Live config: change a job's overridable keys while it runs, and send its
worker the new config (composed as at its start, with the change in).

Changes to one job run one at a time, in the order they came (each holds
the job's ``config_lock`` from its first step to its last): a second one
waits for the first to be made or refused, then starts from what the job
has then. A change is kept in the store first, then sent to the worker;
refused there, the store gets the job's config as it was back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from configparser import ConfigParser

from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from turberfield_twisted.config.job_section import check_overrides
from turberfield_twisted.contract import bearer_header
from turberfield_twisted.errors import (
    ApiError,
    ChangeRefused,
    ConfigPushFailed,
    NotReady,
    StoreFailed,
    TransportError,
    UnknownJob,
)
from turberfield_twisted.jobs.job import ENDED, Job, JobState
from turberfield_twisted.jobs.table import JobTable
from turberfield_twisted.worker.parent import HttpClient, error_message, exchange

__all__ = ["push_config", "update_config"]

log = Logger(namespace="turberfield_twisted.daemon.live_config")


async def update_config(table: JobTable, cfg: ConfigParser, guid: str, changes: object, *,
                        push: Callable[[Job, dict[str, str]], Awaitable[None]],
                        keep: Callable[[Job, Mapping[str, str]], None] | None = None,
                        timeout: float = 10.0) -> Job:
    """
    Change job ``guid`` (of ``table``, whose modules ``cfg`` configures)'s
    overridable keys (checked as at launch), all or nothing, after any
    change to it that came first. The new overrides are kept first
    (``keep(job, overrides)``, the durable store); then a ``ready`` job's
    worker is sent its new config (``push(job, overrides)``: see
    :func:`push_config`), a ``starting`` one's once it is ready, waiting
    at most ``timeout``; a job that is not running takes it at its next
    start. Only once the worker took it (or there is none to ask) is the
    job changed.

    Return the job. Raise :class:`UnknownJob`, :class:`OverrideNotAllowed`
    or :class:`BadOverride` (a bad change); :class:`ChangeRefused` (its
    worker refused it), :class:`ConfigPushFailed` (its worker could not be
    reached) or :class:`NotReady` (a starting job did not get ready in
    time); or :class:`~.errors.StoreFailed`. In each of these cases nothing
    is changed, so nothing is kept that would break its next start.
    """
    job = table.job(guid)
    checked = check_overrides(cfg, job.module, changes)
    if job.config_lock.locked:
        log.info("job {guid}: a config change waits for the one before it", guid=guid)
    await job.config_lock.acquire()
    try:
        if table.workers.get(guid) is not job:
            raise UnknownJob(guid)  # forgotten while this change waited
        await _change(table, job, checked, push, keep, timeout)
    finally:
        job.config_lock.release()
    return job


async def _change(table: JobTable, job: Job, checked: dict[str, str],
                  push: Callable[[Job, dict[str, str]], Awaitable[None]],
                  keep: Callable[[Job, Mapping[str, str]], None] | None,
                  timeout: float) -> None:
    """Make one checked change of :func:`update_config`, holding the job's lock."""
    guid = job.guid
    if job.state is JobState.STARTING:
        try:
            await table.wait_for_state(guid, (JobState.READY, JobState.STOPPING,
                                              JobState.BACKOFF, *ENDED), timeout)
        except DeferredTimeout:
            raise NotReady(f"job {guid} not ready in {timeout:g}s: nothing changed") from None
    before = dict(job.overrides)
    after = {**before, **checked}
    if keep is not None:
        keep(job, after)  # StoreFailed: nothing changed
    try:
        if job.state is JobState.READY:
            await push(job, after)
    except BaseException:
        if keep is not None:
            try:
                keep(job, before)
            except StoreFailed as exc:
                log.error("job {guid}: the store keeps a change its worker did not take:"
                          " {error}", guid=guid, error=str(exc))
        log.warn("job {guid}: config change not made: {keys}", guid=guid, keys=sorted(checked))
        raise
    job.overrides.clear()
    job.overrides.update(after)
    log.info("job {guid} config changed: {keys}", guid=guid, keys=sorted(checked))


async def push_config(
    http: HttpClient, reactor: IReactorTime, guid: str, url: str, token: str, text: str,
    timeout: float = 10.0,
) -> None:
    """
    POST config ``text`` to a worker's ``url`` (its ``/_proactor/config``)
    with the job's ``token``. Raise :class:`ChangeRefused` if its app
    refused it (422), :class:`ConfigPushFailed` for any other answer but 200
    or none.
    """
    try:
        status, _, body = await exchange(
            http, reactor, timeout, "POST", url,
            headers={**bearer_header(token), b"Content-Type": [b"text/plain; charset=utf-8"]},
            data=text.encode("utf-8"),
        )
    except TransportError as exc:
        raise ConfigPushFailed(guid, str(exc)) from None
    if status == 422:
        raise ChangeRefused(guid, error_message(body, status))
    if status != 200:
        raise ConfigPushFailed(guid, str(ApiError(status, error_message(body, status))), status)
