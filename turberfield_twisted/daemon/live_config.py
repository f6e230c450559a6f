"""
Live config: change a job's overridable keys while it runs, and send its
worker the new config (composed as at its start, with the change in).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    TransportError,
)
from turberfield_twisted.jobs.job import ENDED, Job, JobState
from turberfield_twisted.jobs.table import JobTable
from turberfield_twisted.worker.parent import HttpClient, error_message, exchange

__all__ = ["push_config", "update_config"]

log = Logger(namespace="turberfield_twisted.daemon.live_config")


async def update_config(table: JobTable, cfg: ConfigParser, guid: str, changes: object, *,
                        push: Callable[[Job], Awaitable[None]],
                        keep: Callable[[Job], None] | None = None,
                        timeout: float = 10.0) -> Job:
    """
    Change job ``guid`` (of ``table``, whose modules ``cfg`` configures)'s
    overridable keys (checked as at launch), all or nothing. A ``ready``
    job's worker is sent its new config first (``push(job)``: see
    :func:`push_config`); a ``starting`` one once it is ready, waiting at
    most ``timeout``; a job that is not running takes it at its next start.
    Only once the worker took it (or there is none to ask) is the change
    made and kept (``keep(job)``, the durable store).

    Return the job. Raise :class:`UnknownJob`, :class:`OverrideNotAllowed`
    or :class:`BadOverride` (a bad change); :class:`ChangeRefused` (its
    worker refused it), :class:`ConfigPushFailed` (its worker could not be
    reached) or :class:`NotReady` (a starting job did not get ready in
    time); or :class:`~.errors.StoreFailed`. In each of these cases nothing
    is changed, so nothing is kept that would break its next start.
    """
    job = table.job(guid)
    checked = check_overrides(cfg, job.module, changes)
    if job.state is JobState.STARTING:
        try:
            await table.wait_for_state(guid, (JobState.READY, JobState.STOPPING,
                                              JobState.BACKOFF, *ENDED), timeout)
        except DeferredTimeout:
            raise NotReady(f"job {guid} not ready in {timeout:g}s: nothing changed") from None
    before = dict(job.overrides)
    job.overrides.update(checked)
    try:
        if job.state is JobState.READY:
            await push(job)
        if keep is not None:
            keep(job)
    except BaseException:
        job.overrides.clear()
        job.overrides.update(before)
        log.warn("job {guid}: config change not made: {keys}", guid=guid, keys=sorted(checked))
        raise
    log.info("job {guid} config changed: {keys}", guid=guid, keys=sorted(checked))
    return job


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
