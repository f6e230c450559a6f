// The hooks page: the web-hook subscriptions with their delivery counters,
// a form to add one (its secret is shown once) and a button to remove each.

import { ApiError, call } from "./api.js";
import { el, fill, say, setText } from "./dom.js";

/** Seconds between reads of the counters. */
const EVERY = 5;
const COUNTERS = ["queued", "delivered", "dropped", "failed_attempts"];

export class HooksPage {
  constructor(app) {
    this.app = app;
  }

  mount(view) {
    this.notice = el("div", { class: "notices" });
    this.body = el("tbody");
    this.table = el("table", { class: "hooks", id: "hooks" },
      el("thead", {}, el("tr", {},
        ["Id", "URL", "Events", "Queued", "Delivered", "Dropped", "Failed attempts", ""]
          .map((label) => el("th", { scope: "col" }, label)))),
      this.body);
    this.empty = el("p", { class: "empty", hidden: true }, "No subscriptions.");
    const url = el("input", {
      type: "url", id: "hook-url", name: "url", required: true,
      placeholder: "http://127.0.0.1:9000/hook", autocomplete: "off",
    });
    const events = el("input", {
      type: "text", id: "hook-events", name: "events", value: "*", autocomplete: "off",
      title: "* (all), a state (ready, failed, ...), worker:* or worker:NAME; comma-separated",
    });
    const submit = el("button", { type: "submit", id: "hook-submit" }, "Subscribe");
    this.added = el("div", { class: "notices", id: "hook-added" });
    const form = el("form", { class: "hook-form", id: "hook-form" },
      el("label", { class: "field" }, el("span", { class: "key" }, "URL"), url),
      el("label", { class: "field" }, el("span", { class: "key" }, "Events"), events),
      el("div", { class: "buttons" }, submit), this.added);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const names = events.value.split(",").map((name) => name.trim()).filter(Boolean);
      submit.disabled = true;
      try {
        const hook = await call("POST", "/hooks", { url: url.value, events: names.length ? names : ["*"] });
        if (hook.secret) {
          fill(this.added, el("p", { class: ["message", "ok"], role: "status" },
            `Subscribed ${hook.id}. Its signing secret, shown this once: `,
            el("code", { class: "secret" }, hook.secret)));
        } else {
          say(this.added, "info", `Already subscribed as ${hook.id}.`);
        }
        this.load();
      } catch (error) {
        say(this.added, "error", `Not subscribed: ${error.message}`);
      } finally {
        submit.disabled = false;
      }
    });
    fill(view, el("h2", {}, "Web-hooks"), this.notice, this.table, this.empty,
      el("section", { class: "launch" }, el("h3", {}, "Subscribe a URL"), form));
    this.rows = new Map();
    this.ticking = setInterval(() => this.load(), EVERY * 1000);
    this.load();
  }

  unmount() {
    clearInterval(this.ticking);
  }

  async load() {
    let hooks;
    try {
      ({ hooks } = await call("GET", "/hooks"));
    } catch (error) {
      say(this.notice, "error", error instanceof ApiError && error.status === 404
        ? "Web-hooks are not enabled on this daemon." : `Could not read the hooks: ${error.message}`);
      this.table.hidden = true;
      return;
    }
    this.table.hidden = false;
    const seen = new Set();
    for (const hook of hooks) {
      seen.add(hook.id);
      let row = this.rows.get(hook.id);
      if (row === undefined) {
        row = this.row(hook);
        this.rows.set(hook.id, row);
        this.body.append(row.tr);
      }
      for (const name of COUNTERS) setText(row.cells[name], hook[name] ?? "—");
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = hooks.length > 0;
  }

  row(hook) {
    const cells = {};
    for (const name of COUNTERS) cells[name] = el("td", { class: ["number", name] });
    const remove = el("button", {
      type: "button", class: "remove", dataset: { action: "remove" },
      onclick: async () => {
        try {
          await call("DELETE", `/hooks/${encodeURIComponent(hook.id)}`);
          say(this.notice, "ok", `Removed ${hook.id}.`);
        } catch (error) {
          say(this.notice, "error", `Could not remove ${hook.id}: ${error.message}`);
        }
        this.load();
      },
    }, "Remove");
    const tr = el("tr", { dataset: { hook: hook.id } },
      el("td", {}, el("code", {}, hook.id)), el("td", { class: "url" }, hook.url),
      el("td", {}, hook.events.join(", ")), COUNTERS.map((name) => cells[name]), el("td", {}, remove));
    return { tr, cells };
  }
}
