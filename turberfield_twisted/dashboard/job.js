// One job's page: its record, its last error, its config and a form to change
// it live, and its output: the recent lines (GET /jobs/{guid}/logs), then each
// new one as the event stream brings it.

import { ApiError, call, jobPath } from "./api.js";
import { badge, el, fill, say, setText, trail } from "./dom.js";
import { bytes, clock, cpu, duration, text, when } from "./format.js";
import { actions, stoppable } from "./jobs.js";
import { changesOf, overrideInputs } from "./launch.js";

/** Output lines kept on the page. */
const KEEP = 1000;

const FIELDS = [
  ["guid", "Guid", (job) => job.guid],
  ["module", "Module", (job) => job.module],
  ["session", "Session", (job) => text(job.session)],
  ["pid", "Pid", (job) => text(job.pid)],
  ["port", "Port", (job) => text(job.port)],
  ["started", "Started", (job) => when(job.started)],
  ["uptime", "Uptime", (job, store) => duration(store.uptime(job))],
  ["restarts", "Restarts", (job) => text(job.restarts)],
  ["exit", "Last exit", (job) => job.exit_signal !== null && job.exit_signal !== undefined
    ? `signal ${job.exit_signal}` : text(job.exit_code)],
  ["rss", "RSS", (job) => bytes(job.rss)],
  ["cpu", "CPU", (job) => cpu(job.cpu)],
  ["wanted", "Wanted", (job) => text(job.wanted)],
  ["declared", "Declared", (job) => (job.declared ? "yes, in the config" : "no")],
  ["requires", "Requires", (job) => (job.requires?.length ? job.requires.join(", ") : "—")],
];

export class JobPage {
  constructor(app, guid) {
    this.app = app;
    this.store = app.store;
    this.guid = guid;
    this.tail = null; // the recent lines' keys, until they are shown; then null
    this.early = [];
    this.shownConfig = null;
  }

  mount(view) {
    const guid = this.guid;
    this.notice = el("div", { class: "notices" });
    this.badge = el("span", { class: "job-state", id: "job-state" });
    const { stop, restart } = actions(guid, this.notice, this.store);
    this.stop = stop;
    this.values = {};
    const rows = FIELDS.map(([key, label]) => {
      this.values[key] = el("dd", { dataset: { field: key } });
      return [el("dt", {}, label), this.values[key]];
    });
    this.lastError = el("pre", { class: "last-error", id: "last-error" });
    this.config = el("tbody");
    this.configForm = el("div", { id: "config-change", class: "needs-operator" });
    this.output = el("div", { class: "output", id: "output", role: "log", "aria-label": "output" });
    this.follow = el("input", { type: "checkbox", id: "follow", checked: true });
    fill(view,
      el("p", { class: "crumbs" }, el("a", { href: "#/jobs" }, "Jobs"), " / ", guid),
      el("h2", {}, "Job ", el("code", {}, guid)),
      el("div", { class: "toolbar" }, this.badge, stop, restart),
      this.notice,
      el("div", { class: "columns" },
        el("section", { class: "record" }, el("h3", {}, "Record"),
          el("dl", { id: "record" }, rows.flat())),
        el("section", { class: "config" }, el("h3", {}, "Config"),
          el("table", { class: "config", id: "config" },
            el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Key"),
              el("th", { scope: "col" }, "Value"), el("th", { scope: "col" }, "From"))),
            this.config),
          el("p", { class: "hint" }, "Secrets (tokens) are never shown."),
          this.configForm)),
      el("section", { class: "errors" }, el("h3", {}, "Last error"), this.lastError),
      el("section", { class: "logs" },
        el("h3", {}, "Output ", el("label", { class: "follow" }, this.follow, " follow")),
        this.output));
    this.unlisten = this.store.listen((guids) => {
      if (guids === null || guids.includes(guid)) this.render();
    });
    this.ticking = setInterval(() => this.renderField("uptime"), 1000);
    this.app.follow(guid, (kind, data) => this.live(kind, data));
    this.load();
  }

  unmount() {
    this.unlisten();
    clearInterval(this.ticking);
    this.app.follow(null, null);
  }

  async load() {
    try {
      const job = await call("GET", jobPath(this.guid));
      if (!this.store.jobs.has(this.guid)) this.store.jobs.set(this.guid, job);
      this.render();
    } catch (error) {
      say(this.notice, "error", error instanceof ApiError && error.status === 404
        ? `No job ${this.guid} (ended jobs are forgotten after a while).`
        : `Could not read the job: ${error.message}`);
      return;
    }
    this.tail = new Set();
    try {
      const { lines } = await call("GET", jobPath(this.guid, "/logs?lines=500"));
      for (const line of lines) {
        this.tail.add(key(line));
        this.line(line);
      }
      this.newest = lines.length ? lines[lines.length - 1].time : 0;
    } catch (error) {
      say(this.notice, "error", `Could not read its output: ${error.message}`);
      this.newest = 0;
    }
    const early = this.early;
    this.early = null;
    for (const item of early) this.live(...item);
  }

  /** A log line or worker event of this job, from the stream. */
  live(kind, data) {
    if (this.early !== null) {
      this.early.push([kind, data]); // before the recent lines are shown
      return;
    }
    if (kind === "log") {
      if (data.time < this.newest || this.tail.has(key(data))) return; // already shown
      this.line(data);
    } else {
      this.line({ time: data.time, stream: "event", line: `event ${data.event}: ${JSON.stringify(data.data)}` });
    }
  }

  line({ time, stream, line }) {
    const output = this.output;
    const atEnd = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    output.append(el("div", { class: ["line", stream], dataset: { stream } },
      el("time", {}, clock(time)), " ", el("span", { class: "text" }, line)));
    while (output.childElementCount > KEEP) output.firstElementChild.remove();
    if (this.follow.checked && atEnd) output.scrollTop = output.scrollHeight;
  }

  render() {
    const job = this.store.jobs.get(this.guid);
    if (job === undefined) return;
    const states = this.store.trails.get(this.guid) ?? [];
    fill(this.badge, badge(job.state), states.length > 1 ? trail(states) : null);
    for (const [name] of FIELDS) this.renderField(name);
    setText(this.lastError, job.last_error ?? "none");
    this.lastError.classList.toggle("none", !job.last_error);
    this.stop.disabled = !stoppable(job);
    this.renderConfig(job);
  }

  renderField(name) {
    const job = this.store.jobs.get(this.guid);
    const field = FIELDS.find(([key]) => key === name);
    if (job !== undefined && field !== undefined) setText(this.values[name], field[2](job, this.store));
  }

  renderConfig(job) {
    const module = (this.app.modules ?? []).find((one) => one.name === job.module);
    const config = job.config ?? {};
    const shown = JSON.stringify([config, module ?? null]);
    if (shown === this.shownConfig) return; // unchanged: keep what is being typed
    this.shownConfig = shown;
    const rows = Object.entries(config).map(([name, value]) =>
      el("tr", { dataset: { key: name } }, el("td", {}, name), el("td", { class: "value" }, value),
        el("td", {}, "this job")));
    for (const [name, value] of Object.entries(module?.defaults ?? {})) {
      if (!(name in config)) {
        rows.push(el("tr", { dataset: { key: name } }, el("td", {}, name),
          el("td", { class: "value" }, value), el("td", {}, "module default")));
      }
    }
    fill(this.config, rows.length ? rows : el("tr", {}, el("td", { colspan: "3" }, "no overrides")));
    if (!module || module.overridable.length === 0) {
      fill(this.configForm, el("p", { class: "hint" }, "Its module lets nothing be changed."));
      return;
    }
    const box = el("div", { class: "notices", id: "config-notice" });
    const fields = el("div", { class: "fields" }, overrideInputs(module, config, "change"));
    const submit = el("button", { type: "submit", id: "config-submit" }, "Change");
    const form = el("form", { class: "change-form", id: "config-form" },
      el("h4", {}, "Change it live"), fields, el("div", { class: "buttons" }, submit), box);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      say(this.notice, "", "");
      const changes = changesOf(fields, config);
      if (Object.keys(changes).length === 0) {
        say(box, "info", "Nothing to change.");
        return;
      }
      submit.disabled = true;
      try {
        const changed = await call("PATCH", jobPath(this.guid, "/config"), changes);
        this.store.jobs.set(this.guid, { ...this.store.jobs.get(this.guid), ...changed });
        this.render();
        say(this.notice, "ok", `Changed ${Object.keys(changes).join(", ")}.`);
        this.store.refresh();
      } catch (error) {
        say(box, "error", error instanceof ApiError && error.status === 422
          ? `Refused, nothing was changed: ${error.reason}`
          : `Not changed: ${error.message}`);
        submit.disabled = false;
      }
    });
    fill(this.configForm, form);
  }
}

function key(line) {
  return `${line.time}|${line.stream}|${line.line}`;
}
