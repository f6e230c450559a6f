// The jobs as the page knows them: loaded from GET /jobs, kept current by the
// event stream's state events, and refreshed from GET /jobs now and then
// (uptime, memory and CPU are only read there), never more than once a second.

import { call } from "./api.js";
import { RUNNING } from "./format.js";

/** How many recent states each job keeps (shown as its trail). */
const TRAIL = 6;
/** Seconds between refreshes while nothing asks for one sooner. */
const EVERY = 5;
/** The shortest time between two refreshes, in seconds. */
const AT_MOST = 1;

/**
 * What to change of `job`'s readings for process `pid`: nothing if it is
 * the same process, else its uptime, memory and CPU are not known yet.
 */
function readings(job, pid) {
  return pid === job.pid ? {} : { uptime: null, rss: null, cpu: null };
}

export class JobStore {
  constructor() {
    /** guid -> the job's view (GET /jobs's fields), updated by events. */
    this.jobs = new Map();
    /** guid -> [{state, time}], its recent states, newest last. */
    this.trails = new Map();
    /** When the last refresh was answered (performance.now(), ms). */
    this.fetched = 0;
    this.listeners = new Set();
    this.timer = null;
    this.inFlight = null;
    this.again = false;
    this.error = null;
    /** Events taken so far, and guid -> the number of its last one. */
    this.seq = 0;
    this.lastEvent = new Map();
  }

  /** Call `listener(guids)` (the jobs that changed; null: all) on each change. */
  listen(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(guids) {
    for (const listener of [...this.listeners]) listener(guids);
  }

  /** Refresh every few seconds from now on. */
  start() {
    this.stop();
    this.timer = setInterval(() => this.refresh(), EVERY * 1000);
    return this.refresh();
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stop, and forget every job (on logging out). */
  reset() {
    this.stop();
    this.jobs.clear();
    this.trails.clear();
    this.lastEvent.clear();
    this.error = null;
  }

  /** Read GET /jobs again soon (at once, unless one was read under a second ago). */
  refresh() {
    if (this.inFlight !== null) {
      this.again = true;
      return this.inFlight;
    }
    const wait = Math.max(0, AT_MOST * 1000 - (performance.now() - this.fetched));
    let asked = this.seq;
    this.inFlight = new Promise((resolve) => setTimeout(resolve, wait))
      .then(() => {
        asked = this.seq;
        return call("GET", "/jobs");
      })
      .then((body) => {
        this.error = null;
        this.load(body.jobs, asked);
      }, (error) => {
        this.error = error;
        this.changed(null);
      })
      .finally(() => {
        this.fetched = performance.now();
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
    return this.inFlight;
  }

  /**
   * Take GET /jobs's `jobs`, asked for after event number `asked`: a job
   * with a later event keeps what that event said (the answer may be older).
   */
  load(jobs, asked = this.seq) {
    const seen = new Set();
    for (const job of jobs) {
      seen.add(job.guid);
      const known = this.jobs.get(job.guid);
      if (known !== undefined && (this.lastEvent.get(job.guid) ?? 0) > asked) {
        const { state, port, pid, restarts, last_error: lastError } = known;
        this.jobs.set(job.guid, {
          ...job, state, port, pid, restarts, last_error: lastError, ...readings(job, pid),
        });
        continue;
      }
      if (known === undefined || known.state !== job.state) this.step(job.guid, job.state);
      this.jobs.set(job.guid, job);
    }
    for (const guid of [...this.jobs.keys()]) {
      if (!seen.has(guid) && (this.lastEvent.get(guid) ?? 0) <= asked) {
        this.jobs.delete(guid);
        this.trails.delete(guid);
        this.lastEvent.delete(guid);
      }
    }
    this.changed(null);
  }

  step(guid, state) {
    const trail = this.trails.get(guid) ?? [];
    if (trail.length === 0 || trail[trail.length - 1].state !== state) {
      trail.push({ state, time: Date.now() / 1000 });
    }
    this.trails.set(guid, trail.slice(-TRAIL));
  }

  /** Take an event of the stream (`state` events change a job). */
  event(name, data) {
    if (name === "gap") {
      this.refresh(); // events were lost: read the whole table again
      return;
    }
    if (name !== "state" || data === null || typeof data.guid !== "string") return;
    this.seq += 1;
    this.lastEvent.set(data.guid, this.seq);
    const known = this.jobs.get(data.guid);
    this.step(data.guid, data.event);
    if (known === undefined) {
      this.jobs.set(data.guid, {
        guid: data.guid, module: data.module, session: null, state: data.event,
        port: data.port, pid: data.pid, restarts: data.restarts, last_error: data.last_error,
        uptime: null, rss: null, cpu: null, config: {},
      });
    } else {
      this.jobs.set(data.guid, {
        ...known, state: data.event, port: data.port, pid: data.pid,
        restarts: data.restarts, last_error: data.last_error, ...readings(known, data.pid),
      });
    }
    this.changed([data.guid]);
    this.refresh(); // for its uptime, memory and session: bounded, as above
  }

  /** The job's uptime now (its last read one, plus the time since); null if it has no process. */
  uptime(job) {
    if (!RUNNING.has(job.state) || job.uptime === null || job.uptime === undefined) return null;
    return job.uptime + (performance.now() - this.fetched) / 1000;
  }
}
