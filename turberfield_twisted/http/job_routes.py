"""
The control API's job routes: ``/jobs`` and a job's own calls
(``GET /config/{guid}``, ``POST /jobs/{guid}/events`` and ``/listening``).

:class:`JobRoutes` holds them, with the checks every job route makes (the
caller's scope, or the job's own token); :class:`~.api.ControlAPI` is one,
and adds its routes to the same routing table (:attr:`JobRoutes.app`).
"""

from __future__ import annotations

from configparser import DEFAULTSECT

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.server import Request

from turberfield_twisted.access.gate import Gate, caller_of, check_scope
from turberfield_twisted.daemon.initiator import Initiator
from turberfield_twisted.daemon.keeper import forget_ended
from turberfield_twisted.errors import BadGuid, GuidTaken
from turberfield_twisted.http.args import event_args, launch_args, wait_args
from turberfield_twisted.http.gate import GatedRouter
from turberfield_twisted.http.logs_api import LogsAPI
from turberfield_twisted.http.placement import REPORT_KEYS, take_report
from turberfield_twisted.http.roles import ROLES
from turberfield_twisted.http.views import change_view, job_views
from turberfield_twisted.http.web import Unauthorized, json_response, read_object, require_token
from turberfield_twisted.jobs.job import ENDED, Job
from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["JobRoutes"]


class JobRoutes:
    """
    The job routes of the control API, on its one routing table ``app``
    (gated by :data:`~.roles.ROLES`); they act on ``initiator``'s jobs,
    read bodies of at most ``max_body`` bytes and ask ``gate`` (throttle,
    tokens) as :class:`~.api.ControlAPI` sets them.
    """

    #: The control API's routing table: :class:`~.api.ControlAPI` adds its own routes to it.
    app = GatedRouter(ROLES)
    log = Logger()

    initiator: Initiator
    reactor: IClientReactor
    gate: Gate
    max_body: int
    logs_api: LogsAPI

    # -- auth --------------------------------------------------------------

    def _job(self, request: Request, guid: str) -> Job:
        """Job ``guid``, if the caller's token may act on it (its module or service)."""
        job = self.initiator.job(guid)
        check_scope(request, job.module, job.service)
        return job

    def _job_caller(self, request: Request, guid: str) -> Job:
        """The job, if the request carries that job's own token."""
        self.gate.check_throttle(request)
        request.job_caller = guid  # type: ignore[attr-defined]  # the audit skips its successes
        job = self.initiator.workers.get(guid)
        require_token(request, job.token if job is not None else b"")
        if job is None:
            raise Unauthorized()
        return job

    # -- jobs --------------------------------------------------------------

    @app.route("/jobs", methods=["GET"])
    def list_jobs(self, request: Request) -> bytes:
        """Every job the initiator knows, ended ones too."""
        caller = caller_of(request)
        jobs = job_views([job for job in self.initiator.workers.values()
                          if caller is None or caller.may_touch(job.module, job.service)],
                         self.reactor.seconds())
        return json_response(request, 200, {"jobs": jobs})

    @app.route("/jobs", methods=["POST"])
    async def launch(self, request: Request) -> bytes:
        """``{"module", "session"?, "config"?, "guid"?}``: start a job; 201."""
        args = launch_args(request, self.max_body)
        module = args.pop("module")
        self.initiator.settings.allowed(module)  # or 404, naming those that are
        check_scope(request, module)
        try:
            guid = await self.initiator.launch(module, **args)
        except BadGuid:
            given = args["guid"]
            if given in self.initiator.workers or given == DEFAULTSECT or (
                    self.initiator.cfg.has_section(given)):
                raise GuidTaken(f"guid {given!r} is taken: a job has it, or it names a"
                                " section of the config") from None
            raise
        job = self.initiator.job(guid)
        self.log.info("job {guid} launched ({module}) by the control API", guid=guid,
                      module=module)
        return json_response(request, 201, job.as_json(), {"Location": f"/jobs/{guid}"})

    @app.route("/jobs/<guid>", methods=["GET"])
    async def get_job(self, request: Request, guid: str) -> bytes:
        """
        One job. With ``?wait=<state>`` (and ``timeout``, 0..60 s, default
        10), answer once it is in that state or has ended, or time is up.
        """
        job = self._job(request, guid)
        wait = wait_args(request)
        if wait is not None:
            await self._until(job, *wait)
        return json_response(request, 200, job_views([job], self.reactor.seconds())[0])

    async def _until(self, job: Job, wanted: str, timeout: float) -> None:
        """Return once ``job`` is ``wanted`` or has ended, or after ``timeout``."""
        if timeout <= 0:
            return
        try:
            await self.initiator.wait_for_state(job.guid, {wanted, *ENDED}, timeout)
        except defer.TimeoutError:
            pass

    @app.route("/jobs/<guid>", methods=["DELETE"])
    def stop_job(self, request: Request, guid: str) -> bytes:
        """Ask the job to stop; answer at once (202) while it stops."""
        job = self._job(request, guid)
        self.log.info("job {guid} stop asked by the control API", guid=guid)
        self.initiator.stop(guid).addErrback(
            lambda failure: self.log.failure("job {guid} did not stop cleanly",
                                             failure=failure, guid=guid)
        )
        return json_response(request, 202, job.as_json())

    @app.route("/jobs/<guid>/restart", methods=["POST"])
    def restart_job(self, request: Request, guid: str) -> bytes:
        """
        Start a job again (a ``failed`` job stays down until this); one that
        runs is stopped first (TERM, then KILL) and started once it exited; 202.
        """
        self._job(request, guid)
        job = self.initiator.restart(guid)
        self.log.info("job {guid} restart asked by the control API", guid=guid)
        return json_response(request, 202, job.as_json())

    @app.route("/jobs/<guid>/logs", methods=["GET"])
    async def logs(self, request: Request, guid: str) -> bytes:
        """The last ``lines`` (1..1000, default 100) of its output (``since``): :class:`LogsAPI`."""
        return await self.logs_api.read(request, self._job(request, guid))

    @app.route("/jobs/<guid>/config", methods=["PATCH"])
    async def update_config(self, request: Request, guid: str) -> bytes:
        """
        ``{key: value}``: change a job's overrides; a running job is sent its
        new config (422 if it refused it, 502 if it was not reached: nothing
        is changed). Changes to one job run one at a time, in order. The
        answer says whether the change is ``kept`` for the daemon's next start.
        """
        self._job(request, guid)
        changes = read_object(request, self.max_body)
        job = await self.initiator.update_config(guid, changes)
        self.log.info("job {guid} config changed by the control API: {keys}", guid=guid,
                      keys=sorted(changes))
        return json_response(request, 200, change_view(job, self.initiator.settings))

    @app.route("/jobs/<guid>/forget", methods=["POST"])
    def forget_job(self, request: Request, guid: str) -> bytes:
        """Forget an ended job (not a declared one): gone from the list and the store."""
        self._job(request, guid)
        job = forget_ended(self.initiator, guid, self.initiator.forget_kept)
        self.log.info("job {guid} forgotten by the control API", guid=guid)
        return json_response(request, 200, job.as_json())

    # -- a job's own calls -------------------------------------------------

    @app.route("/config/<guid>", methods=["GET"])
    def job_config(self, request: Request, guid: str) -> bytes:
        """A job's own config, less secrets; that job's token only."""
        self._job_caller(request, guid)
        return json_response(request, 200, {"guid": guid, **self.initiator.config_view(guid)})

    @app.route("/jobs/<guid>/events", methods=["POST"])
    def worker_event(self, request: Request, guid: str) -> bytes:
        """``{"event": name, "data"?: any}`` from the job itself; 202."""
        self._job_caller(request, guid)
        event, data = event_args(request, self.max_body)
        self.initiator.worker_event(guid, event, data)
        return json_response(request, 202, {"accepted": True})

    @app.route("/jobs/<guid>/listening", methods=["POST"])
    async def worker_listening(self, request: Request, guid: str) -> bytes:
        """
        ``{"host", "port", "step"?}`` from a job on a cluster node: where it
        listens; 202 once its launcher agrees, 409 if it does not.
        """
        job = self._job_caller(request, guid)
        await take_report(job, read_object(request, self.max_body, REPORT_KEYS))
        return json_response(request, 202, {"accepted": True})
