// The dashboard: log in with a token of any role, then the jobs, a job's page, the
// services and the web-hooks, kept live by one event stream (GET /events). What the
// token's role may not do is hidden (body[data-role], app.css); the API refuses it
// all the same.

import { call, token } from "./api.js";
import { fill, say, setText } from "./dom.js";
import { HooksPage } from "./hooks.js";
import { JobPage } from "./job.js";
import { JobsPage } from "./jobs.js";
import { ServicesPage } from "./services.js";
import { JobStore } from "./store.js";
import { EventStream } from "./stream.js";

class App {
  constructor() {
    this.view = document.getElementById("view");
    this.login = document.getElementById("login");
    this.loginError = document.getElementById("login-error");
    this.nav = document.getElementById("nav");
    this.status = document.getElementById("status");
    this.logoutButton = document.getElementById("logout");
    this.store = new JobStore();
    this.stream = null;
    this.page = null;
    this.modules = null;
    this.onLog = null;
  }

  start() {
    this.login.addEventListener("submit", (event) => {
      event.preventDefault();
      this.enter(document.getElementById("token").value.trim());
    });
    this.logoutButton.addEventListener("click", () => this.leave(""));
    window.addEventListener("hashchange", () => this.route());
    window.addEventListener("unauthorized", () => {
      if (this.login.hidden) this.leave("The daemon refused the token.");
    });
    if (token.get()) this.enter(token.get());
    else this.leave("");
  }

  /** Try `value` as a token; keep it in this tab if the daemon takes it. */
  async enter(value) {
    if (!value) return;
    token.set(value);
    try {
      this.who = await call("GET", "/whoami");
      this.modules = (await call("GET", "/modules")).modules;
    } catch (error) {
      this.leave(error.status === 401 ? "That token was refused." : error.message);
      return;
    }
    document.body.dataset.role = this.who.role;
    const role = document.getElementById("role");
    setText(role, `${this.who.name} (${this.who.role})`);
    role.hidden = false;
    this.login.hidden = true;
    this.nav.hidden = false;
    this.logoutButton.hidden = false;
    document.getElementById("token").value = "";
    say(this.loginError, "", "");
    this.openStream(null);
    await this.store.start();
    this.route();
  }

  /** Forget the token, stop reading, and ask for the token again (saying `why`). */
  leave(why) {
    token.clear();
    this.stream?.stop();
    this.stream = null;
    this.store.reset();
    this.page?.unmount();
    this.page = null;
    fill(this.view);
    delete document.body.dataset.role;
    document.getElementById("role").hidden = true;
    this.nav.hidden = true;
    this.logoutButton.hidden = true;
    this.login.hidden = false;
    this.setStatus("offline");
    say(this.loginError, "error", why);
    document.getElementById("token").focus();
  }

  /** (Re)open the stream, with `logs` (a guid) for that job's output; resume where it was. */
  openStream(logs, lastId = this.stream?.lastId ?? null) {
    this.stream?.stop();
    this.stream = new EventStream({
      logs,
      lastId,
      onEvent: (name, data) => this.event(name, data),
      onStatus: (status) => this.setStatus(status),
      onDenied: () => this.leave("The daemon refused the token."),
      onRefused: () => this.refused(),
    });
    this.stream.start();
  }

  /** The stream was refused (its job is gone, or its id unknown): follow every job afresh. */
  refused() {
    if (this.stream === null || (this.stream.logs === null && this.stream.lastId === null)) return;
    this.openStream(null, null);
    this.store.refresh();
  }

  /** Send job `guid`'s output lines and worker events to `onLog(kind, data)` (null: stop). */
  follow(guid, onLog) {
    this.onLog = onLog;
    if (this.stream !== null && this.stream.logs !== guid) this.openStream(guid);
  }

  event(name, data) {
    const mine = this.stream !== null && data && data.guid === this.stream.logs;
    if (name === "log") {
      if (mine && this.onLog) this.onLog("log", data);
      return;
    }
    if (name === "worker" && mine && this.onLog) this.onLog("worker", data);
    if (name === "open" && this.stream?.opened) this.store.refresh(); // back after a drop
    if (name === "open" && this.stream) this.stream.opened = true;
    this.store.event(name, data);
    this.page?.event?.(name, data);
  }

  setStatus(status) {
    this.status.dataset.status = status;
    setText(this.status, status);
    this.status.title = {
      live: "following the daemon's event stream",
      connecting: "connecting to the event stream",
      reconnecting: "the event stream dropped: trying again",
      offline: "not logged in",
    }[status] ?? status;
  }

  route() {
    if (this.login.hidden === false) return;
    const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    const [section, ...rest] = hash.split("/");
    this.page?.unmount();
    let page;
    if (section === "jobs" && rest.length > 0 && rest.join("/")) {
      page = new JobPage(this, rest.join("/"));
    } else if (section === "hooks") {
      page = new HooksPage(this);
    } else if (section === "services") {
      page = new ServicesPage(this);
    } else {
      page = new JobsPage(this);
    }
    const current = ["hooks", "services"].includes(section) ? section : "jobs";
    for (const link of this.nav.querySelectorAll("a")) {
      if (link.dataset.page === current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    this.page = page;
    page.mount(this.view);
  }
}

new App().start();
