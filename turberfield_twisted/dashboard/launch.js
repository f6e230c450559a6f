// The launch form: a module the daemon allows (GET /modules), an optional
// session, and values for the keys that module lets a launch override.

import { call } from "./api.js";
import { el, fill, say } from "./dom.js";

/** The inputs of `module`'s overridable keys, each with its default as placeholder. */
export function overrideInputs(module, values = {}, prefix = "override") {
  return module.overridable.map((key) => el("label", { class: "field" },
    el("span", { class: "key" }, key),
    el("input", {
      type: "text", name: key, id: `${prefix}-${key}`, value: values[key] ?? "",
      placeholder: module.defaults[key] ?? "", autocomplete: "off", spellcheck: "false",
    })));
}

/** The changes the inputs under `root` ask for: each filled one that differs from `current`. */
export function changesOf(root, current = {}) {
  const changes = {};
  for (const input of root.querySelectorAll("input[name]")) {
    if (input.value !== "" && input.value !== (current[input.name] ?? "")) {
      changes[input.name] = input.value;
    }
  }
  return changes;
}

/** The launch form of the jobs page (`app.modules`: GET /modules's list). */
export function launchForm(app) {
  const box = el("div", { class: "notices" });
  const modules = app.modules ?? [];
  if (modules.length === 0) {
    return el("section", { class: "launch" }, el("h3", {}, "Launch a job"),
      el("p", { class: "empty" }, "This daemon allows no module: give one a section in its config."));
  }
  const select = el("select", { id: "launch-module", name: "module", required: true },
    modules.map((module) => el("option", { value: module.name }, module.name)));
  const session = el("input", {
    type: "text", id: "launch-session", name: "session", maxlength: "256",
    placeholder: "none", autocomplete: "off",
  });
  const overrides = el("fieldset", { class: "overrides", id: "launch-overrides" });
  const showKeys = () => {
    const module = modules.find((one) => one.name === select.value);
    fill(overrides, el("legend", {}, "Overrides"), module.overridable.length
      ? overrideInputs(module)
      : el("p", { class: "empty" }, "This module lets a launch override nothing."));
  };
  select.addEventListener("change", showKeys);
  showKeys();
  const submit = el("button", { type: "submit", id: "launch-submit" }, "Launch");
  const form = el("form", { class: "launch-form", id: "launch" },
    el("label", { class: "field" }, el("span", { class: "key" }, "Module"), select),
    el("label", { class: "field" }, el("span", { class: "key" }, "Session"), session),
    overrides, el("div", { class: "buttons" }, submit), box);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { module: select.value, config: changesOf(overrides) };
    if (session.value) body.session = session.value;
    submit.disabled = true;
    try {
      const job = await call("POST", "/jobs", body);
      say(box, "ok", `Launched ${job.guid} (${job.state}).`);
      app.store.refresh();
    } catch (error) {
      say(box, "error", `Not launched: ${error.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  return el("section", { class: "launch needs-operator" }, el("h3", {}, "Launch a job"), form);
}
