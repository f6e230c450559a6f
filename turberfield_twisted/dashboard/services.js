// The services page: each service's shared address, its instances (with their
// states, each a link to its job's page), a scale control, a rollout button and
// the rollout's progress (and, if it was rolled back, why). Read from
// GET /services, again on each service event and each state event of one of
// their instances, and every few seconds.

import { ApiError, call } from "./api.js";
import { badge, el, fill, say, setText } from "./dom.js";
import { text } from "./format.js";

/** Seconds between reads while no event asks for one sooner. */
const EVERY = 5;

/** `/services/{name}` and below, the name escaped. */
function servicePath(name, rest = "") {
  return `/services/${encodeURIComponent(name)}${rest}`;
}

/** A rollout as a line: "running 2/4", "done 4/4", "failed 0/4" (or "—"). */
export function progress(rollout) {
  return rollout ? `${rollout.state} ${rollout.replaced}/${rollout.total}` : "—";
}

export class ServicesPage {
  constructor(app) {
    this.app = app;
    this.cards = new Map();
    this.loading = null;
    this.again = false;
  }

  mount(view) {
    this.notice = el("div", { class: "notices" });
    this.list = el("div", { class: "services", id: "services" });
    this.empty = el("p", { class: "empty", hidden: true },
      "No services. Make one with proactor service create, POST /services or a [service:NAME]"
      + " section.");
    fill(view, el("h2", {}, "Services"), this.notice, this.list, this.empty);
    this.ticking = setInterval(() => this.load(), EVERY * 1000);
    this.load();
  }

  unmount() {
    clearInterval(this.ticking);
  }

  /** An event of the stream: a service's own, or a state of one of its instances. */
  event(name, data) {
    if (data && (name === "service" || (name === "state" && data.service))) this.load();
  }

  /** Read GET /services (once at a time; once more if asked meanwhile). */
  async load() {
    if (this.loading !== null) {
      this.again = true;
      return;
    }
    this.loading = call("GET", "/services");
    try {
      const { services } = await this.loading;
      this.show(services);
      if (this.notice.dataset.reading) {
        say(this.notice, "", "");
        delete this.notice.dataset.reading;
      }
    } catch (error) {
      say(this.notice, "error", `Could not read the services: ${error.message}`);
      this.notice.dataset.reading = "failed";
    } finally {
      this.loading = null;
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  show(services) {
    const seen = new Set();
    for (const service of services) {
      seen.add(service.name);
      let card = this.cards.get(service.name);
      if (card === undefined) {
        card = this.card(service);
        this.cards.set(service.name, card);
        this.list.append(card.section);
      }
      this.update(card, service);
    }
    for (const [name, card] of this.cards) {
      if (!seen.has(name)) {
        card.section.remove();
        this.cards.delete(name);
      }
    }
    this.empty.hidden = services.length > 0;
  }

  card(service) {
    const name = service.name;
    const box = el("div", { class: "notices" });
    const count = el("input", {
      type: "number", min: "1", step: "1", class: "instances", value: String(service.instances),
      "aria-label": `instances of ${name}`,
    });
    const scale = el("button", {
      type: "submit", class: "scale", dataset: { action: "scale" },
      title: "start more, or drain the newest first",
    }, "Scale");
    const form = el("form", { class: "scale-form" }, el("label", {}, "Instances ", count), scale);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const instances = Number(count.value);
      scale.disabled = true;
      try {
        await call("PATCH", servicePath(name), { instances });
        say(box, "ok", `Scaling ${name} to ${instances}.`);
      } catch (error) {
        say(box, "error", `Not scaled: ${error.message}`);
      } finally {
        scale.disabled = false;
      }
      this.load();
    });
    const rollout = el("button", {
      type: "button", class: "rollout", dataset: { action: "rollout" },
      title: "replace every instance a step at a time; rolled back if a new one fails",
      onclick: async () => {
        rollout.disabled = true;
        try {
          await call("POST", servicePath(name, "/rollout"));
          say(box, "ok", `Rolling ${name} out.`);
        } catch (error) {
          say(box, "error", error instanceof ApiError && error.status === 409
            ? `A rollout of ${name} is running already.` : `No rollout: ${error.message}`);
        }
        this.load();
      },
    }, "Roll out");
    const cells = {
      module: el("dd", { class: "module" }), listen: el("dd", { class: "listen" }),
      ready: el("dd", { class: "ready" }), rollout: el("dd", { class: "rollout-state" }),
      reason: el("dd", { class: "rollout-reason" }),
    };
    const reasonTerm = el("dt", {}, "Rolled back because");
    const members = el("tbody");
    const section = el("section", { class: "service", dataset: { service: name } },
      el("h3", {}, name),
      el("dl", { class: "record" },
        el("dt", {}, "Module"), cells.module, el("dt", {}, "Address"), cells.listen,
        el("dt", {}, "Ready"), cells.ready, el("dt", {}, "Rollout"), cells.rollout,
        reasonTerm, cells.reason),
      el("div", { class: "toolbar needs-operator" }, form, rollout),
      box,
      el("table", { class: "members" },
        el("thead", {}, el("tr", {}, ["Instance", "State", "Restarts", "Port"]
          .map((label) => el("th", { scope: "col" }, label)))),
        members));
    return { section, cells, reasonTerm, members, count, rollout };
  }

  update(card, service) {
    setText(card.cells.module, service.module);
    // A Slurm service has no shared address: only its relay reaches it.
    setText(card.cells.listen, service.listen ?? `relay only: ${service.relay ?? ""}`);
    setText(card.cells.ready, `${service.ready}/${service.instances}`);
    setText(card.cells.rollout, progress(service.rollout));
    card.cells.rollout.dataset.state = service.rollout?.state ?? "none";
    const reason = service.rollout?.state === "failed" ? service.rollout.reason : null;
    setText(card.cells.reason, text(reason));
    card.cells.reason.hidden = card.reasonTerm.hidden = reason === null;
    card.rollout.disabled = service.rollout?.state === "running";
    if (document.activeElement !== card.count) card.count.value = String(service.instances);
    fill(card.members, service.members.map((job) => el("tr", { dataset: { guid: job.guid } },
      el("td", { class: "guid" }, el("a", { href: `#/jobs/${encodeURIComponent(job.guid)}` },
        job.guid)),
      el("td", { class: "state" }, badge(job.state)),
      el("td", { class: "restarts number" }, text(job.restarts)),
      el("td", { class: "port number" }, text(job.port)))));
  }
}
