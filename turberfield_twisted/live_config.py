"""
Live config: change a job's overridable keys while it runs, and send its
worker the new config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from .client import push_config
from .config import check_overrides, job_config_text
from .contract import CONFIG_PATH
from .job import ENDED, Job, JobState

if TYPE_CHECKING:
    from .initiator import Initiator

__all__ = ["update_config"]

log = Logger(namespace="turberfield_twisted.live_config")


async def update_config(initiator: Initiator, guid: str, changes: Any,
                        timeout: float = 10.0,
                        keep: Callable[[Job], None] | None = None) -> Job:
    """
    Change job ``guid``'s overridable keys (checked as at launch), now and
    for its restarts; ``keep(job)`` keeps the change (in the durable
    store) before anything else is done. A ``ready`` job's worker is sent its new config
    (``POST /_proactor/config``, where its app's ``on_config`` runs); a
    ``waiting`` or ``starting`` one once it is ready, waiting at most
    ``timeout``; a job in any other state takes it at its next start.

    Return the job; raise :class:`UnknownJob`, :class:`OverrideNotAllowed`,
    :class:`BadOverride` or :class:`~.errors.StoreFailed` before anything
    changes, or
    :class:`~.client.ConfigPushFailed` if the worker did not take it (the
    change is kept, and applies from the job's next start).
    """
    job = initiator.job(guid)
    checked = check_overrides(initiator.cfg, job.module, changes)
    before = dict(job.overrides)
    job.overrides.update(checked)
    if keep is not None:
        try:
            keep(job)
        except BaseException:
            job.overrides.clear()
            job.overrides.update(before)
            raise
    cfg = initiator.cfg
    if cfg.has_section(guid):
        for key, value in checked.items():
            cfg.set(guid, key, value.replace("$", "$$"))
    log.info("job {guid} config changed: {keys}", guid=guid, keys=sorted(checked))
    if job.state in (JobState.WAITING, JobState.STARTING):
        try:
            await initiator.wait_for_state(guid, (JobState.READY, JobState.STOPPING,
                                                  JobState.BACKOFF, *ENDED), timeout)
        except DeferredTimeout:
            log.warn("job {guid} not ready in {timeout}s: it takes its new config at its"
                     " next start", guid=guid, timeout=timeout)
            return job
    if job.state is not JobState.READY:
        return job
    await push_config(initiator.http, initiator.reactor, guid, job.url(CONFIG_PATH),
                      job.token, job_config_text(cfg, guid), timeout)
    log.info("job {guid} took its new config", guid=guid)
    return job
