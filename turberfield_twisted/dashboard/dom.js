// Building the page. Every string goes into the page as text (textContent or
// an attribute value), never as HTML: a worker's output, error or config
// value shows its characters and runs nothing.

import { STATES } from "./format.js";

/**
 * A new element: `tag`, with `props` (class, dataset, on<event>: a function,
 * properties such as value or disabled, other attributes) and `children`
 * (nodes, or strings and numbers added as text; null and false are skipped).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      node.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${key} must be a function`);
      node.addEventListener(key.slice(2), value);
    } else if (key === "style") {
      throw new TypeError("no inline style: use a class");
    } else if (key in PROPERTIES) {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  add(node, ...children);
  return node;
}

const PROPERTIES = { value: 1, checked: 1, disabled: 1, hidden: 1, required: 1, selected: 1 };

/** Append `children` to `node` (strings as text nodes). */
export function add(node, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace what `node` holds with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  return add(node, ...children);
}

/** Set `node`'s text to `value` ("" for null), only if it changed. */
export function setText(node, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

/** A message line: `kind` is "error", "ok" or "info"; errors are announced. */
export function message(kind, text) {
  return el("p", { class: ["message", kind], role: kind === "error" ? "alert" : "status" }, text);
}

/** Show `text` of `kind` in the `box` (an element kept for messages); "" clears it. */
export function say(box, kind, text) {
  if (!text) {
    box.replaceChildren();
  } else {
    fill(box, message(kind, text));
  }
}

/** A job state as a badge: a shape and a colour, and always its name. */
export function badge(state) {
  return el("span", {
    class: ["badge", `state-${state}`], dataset: { state }, title: STATES[state] ?? state,
  }, el("span", { class: "shape", "aria-hidden": "true" }), state);
}

/** A job's recent states, oldest first: "ready → backoff → starting → ready". */
export function trail(states) {
  return el("span", { class: "trail", title: "recent states, oldest first" },
    states.map(({ state }) => state).join(" → "));
}
