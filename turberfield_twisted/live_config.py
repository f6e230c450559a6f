"""
Live config: change a job's overridable keys while it runs, and send its
worker the new config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger

from .client import push_config
from .config import check_overrides, job_config_text
from .contract import CONFIG_PATH
from .errors import NotReady
from .job import ENDED, Job, JobState

if TYPE_CHECKING:
    from .initiator import Initiator

__all__ = ["update_config"]

log = Logger(namespace="turberfield_twisted.live_config")


async def update_config(initiator: Initiator, guid: str, changes: Any,
                        timeout: float = 10.0,
                        keep: Callable[[Job], None] | None = None) -> Job:
    """
    Change job ``guid``'s overridable keys (checked as at launch), all or
    nothing. A ``ready`` job's worker is sent its new config first (``POST
    /_proactor/config``, where its app's ``on_config`` runs); a
    ``starting`` one once it is ready, waiting at most ``timeout``; a job
    that is not running takes it at its next start. Only once the worker
    took it (or there is none to ask) is the change made and kept
    (``keep(job)``, the durable store).

    Return the job. Raise :class:`UnknownJob`, :class:`OverrideNotAllowed`
    or :class:`BadOverride` (a bad change); :class:`ChangeRefused` (its
    worker refused it), :class:`ConfigPushFailed` (its worker could not be
    reached) or :class:`NotReady` (a starting job did not get ready in
    time); or :class:`~.errors.StoreFailed`. In each of these cases nothing
    is changed, so nothing is kept that would break its next start.
    """
    job = initiator.job(guid)
    checked = check_overrides(initiator.cfg, job.module, changes)
    if job.state is JobState.STARTING:
        try:
            await initiator.wait_for_state(guid, (JobState.READY, JobState.STOPPING,
                                                  JobState.BACKOFF, *ENDED), timeout)
        except DeferredTimeout:
            raise NotReady(f"job {guid} not ready in {timeout:g}s: nothing changed") from None
    cfg = initiator.cfg
    before = dict(job.overrides)
    section: dict[str, str | None] = {
        key: cfg.get(guid, key, raw=True, fallback=None) for key in checked
    } if cfg.has_section(guid) else {}
    _apply(cfg, guid, checked)
    job.overrides.update(checked)
    try:
        if job.state is JobState.READY:
            await push_config(initiator.http, initiator.reactor, guid, job.url(CONFIG_PATH),
                              job.token, job_config_text(cfg, guid), timeout)
        if keep is not None:
            keep(job)
    except BaseException:
        job.overrides.clear()
        job.overrides.update(before)
        _apply(cfg, guid, section, raw=True)
        log.warn("job {guid}: config change not made: {keys}", guid=guid, keys=sorted(checked))
        raise
    log.info("job {guid} config changed: {keys}", guid=guid, keys=sorted(checked))
    return job


def _apply(cfg: Any, guid: str, values: Mapping[str, str | None], raw: bool = False) -> None:
    """
    Set ``values`` in job ``guid``'s section, if it has one (escaped, unless
    ``raw``: as read back from it); a None value removes its key.
    """
    if not cfg.has_section(guid):
        return
    for key, value in values.items():
        if value is None:
            cfg.remove_option(guid, key)
        else:
            cfg.set(guid, key, value if raw else value.replace("$", "$$"))
