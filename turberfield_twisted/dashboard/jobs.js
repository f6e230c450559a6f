// The jobs page: every job in a table kept live by the event stream, with
// filters by module and state, stop and restart buttons, and a launch form.

import { call, jobPath } from "./api.js";
import { badge, el, fill, say, setText, trail } from "./dom.js";
import { bytes, cpu, duration, short, STATES, text } from "./format.js";
import { launchForm } from "./launch.js";

/** The filters, kept while the tab lives (across pages). */
const filters = { module: "", state: "" };

const COLUMNS = [
  ["guid", "Job"], ["module", "Module"], ["session", "Session"], ["state", "State"],
  ["uptime", "Uptime"], ["restarts", "Restarts"], ["rss", "RSS"], ["cpu", "CPU"],
  ["port", "Port"], ["actions", "Actions"],
];

/** What a job's stop and restart buttons do, and what the page says then. */
export async function act(action, guid, box, store) {
  try {
    if (action === "stop") await call("DELETE", jobPath(guid));
    else await call("POST", jobPath(guid, "/restart"));
    say(box, "ok", `${action === "stop" ? "Stopping" : "Restarting"} ${guid}.`);
  } catch (error) {
    say(box, "error", `Could not ${action} ${guid}: ${error.message}`);
  }
  store.refresh();
}

/** Whether a job can be stopped: it runs, or waits (to start or restart). */
export function stoppable(job) {
  return job.state !== "exited" && job.state !== "failed" && job.state !== "stopping";
}

/** The buttons of a job: stop (while it runs or waits) and restart. */
export function actions(guid, box, store) {
  const stop = el("button", {
    type: "button", class: "stop needs-operator", dataset: { action: "stop" }, title: "SIGTERM, then SIGKILL",
    onclick: () => act("stop", guid, box, store),
  }, "Stop");
  const restart = el("button", {
    type: "button", class: "restart needs-operator", dataset: { action: "restart" },
    onclick: () => act("restart", guid, box, store),
  }, "Restart");
  return { stop, restart };
}

export class JobsPage {
  constructor(app) {
    this.app = app;
    this.store = app.store;
    this.rows = new Map();
  }

  mount(view) {
    this.notice = el("div", { class: "notices" });
    this.loadError = el("div", { class: "notices" });
    this.moduleFilter = el("select", { id: "filter-module", onchange: () => this.filter() },
      el("option", { value: "" }, "every module"));
    this.stateFilter = el("select", { id: "filter-state", onchange: () => this.filter() },
      el("option", { value: "" }, "every state"),
      Object.keys(STATES).map((state) => el("option", { value: state }, state)));
    this.stateFilter.value = filters.state;
    this.count = el("span", { class: "count", id: "job-count" });
    this.body = el("tbody");
    this.empty = el("p", { class: "empty", hidden: true });
    const head = el("tr", {}, COLUMNS.map(([key, label]) => el("th", { scope: "col", class: key }, label)));
    fill(view,
      el("h2", {}, "Jobs"),
      el("div", { class: "toolbar" },
        el("label", {}, "Module ", this.moduleFilter),
        el("label", {}, "State ", this.stateFilter),
        this.count),
      this.loadError,
      this.notice,
      el("table", { class: "jobs", id: "jobs" }, el("thead", {}, head), this.body),
      this.empty,
      launchForm(this.app));
    this.unlisten = this.store.listen(() => this.render());
    this.ticking = setInterval(() => this.tick(), 1000);
    this.render();
  }

  unmount() {
    this.unlisten();
    clearInterval(this.ticking);
  }

  filter() {
    filters.module = this.moduleFilter.value;
    filters.state = this.stateFilter.value;
    this.render();
  }

  modules() {
    const names = new Set([...this.store.jobs.values()].map((job) => job.module));
    for (const module of this.app.modules ?? []) names.add(module.name);
    if (filters.module) names.add(filters.module);
    const sorted = [...names].sort();
    const have = [...this.moduleFilter.options].slice(1).map((option) => option.value);
    if (have.join("\n") !== sorted.join("\n")) {
      fill(this.moduleFilter, el("option", { value: "" }, "every module"),
        sorted.map((name) => el("option", { value: name }, name)));
    }
    this.moduleFilter.value = filters.module;
  }

  render() {
    this.modules();
    let shown = 0;
    const order = [];
    for (const job of this.store.jobs.values()) {
      let row = this.rows.get(job.guid);
      if (row === undefined) {
        row = this.row(job.guid);
        this.rows.set(job.guid, row);
      }
      this.update(row, job);
      const visible = (!filters.module || job.module === filters.module) &&
        (!filters.state || job.state === filters.state);
      row.tr.hidden = !visible;
      shown += visible ? 1 : 0;
      order.push(row.tr);
    }
    for (const [guid, row] of this.rows) {
      if (!this.store.jobs.has(guid)) {
        row.tr.remove();
        this.rows.delete(guid);
      }
    }
    const current = [...this.body.children];
    if (current.length !== order.length || current.some((tr, i) => tr !== order[i])) {
      this.body.replaceChildren(...order);
    }
    const total = this.store.jobs.size;
    setText(this.count, shown === total ? `${total} jobs` : `${shown} of ${total} jobs`);
    this.empty.hidden = shown > 0;
    setText(this.empty, total === 0
      ? "No jobs yet: launch one below, or with `proactor launch MODULE`."
      : "No job matches these filters.");
    say(this.loadError, "error",
      this.store.error ? `Could not read the jobs: ${this.store.error.message}` : "");
  }

  row(guid) {
    const cells = {};
    for (const [key] of COLUMNS) cells[key] = el("td", { class: key });
    const { stop, restart } = actions(guid, this.notice, this.store);
    cells.guid.append(el("a", { href: `#/jobs/${encodeURIComponent(guid)}`, title: guid, class: "guid" }, short(guid)));
    cells.actions.append(stop, " ", restart);
    const tr = el("tr", { dataset: { guid } }, COLUMNS.map(([key]) => cells[key]));
    return { tr, cells, stop, restart, state: null, trail: "" };
  }

  update(row, job) {
    const { cells } = row;
    row.tr.dataset.state = job.state;
    setText(cells.module, job.module);
    setText(cells.session, text(job.session));
    const states = this.store.trails.get(job.guid) ?? [];
    const path = states.map(({ state }) => state).join(" ");
    if (row.state !== job.state || row.trail !== path) {
      fill(cells.state, badge(job.state), states.length > 1 ? trail(states) : null);
      row.state = job.state;
      row.trail = path;
    }
    cells.state.title = job.last_error ? `last error: ${job.last_error}` : "";
    setText(cells.uptime, duration(this.store.uptime(job)));
    setText(cells.restarts, job.restarts);
    setText(cells.rss, bytes(job.rss));
    setText(cells.cpu, cpu(job.cpu));
    setText(cells.port, text(job.port));
    row.stop.disabled = !stoppable(job);
  }

  tick() {
    for (const job of this.store.jobs.values()) {
      const row = this.rows.get(job.guid);
      if (row !== undefined) {
        setText(row.cells.uptime, duration(this.store.uptime(job)));
      }
    }
  }
}
