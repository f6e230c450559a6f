// GET /events read with fetch(), since EventSource cannot send the bearer
// header: the Server-Sent Events frames are parsed here, and a dropped stream
// is resumed with Last-Event-ID (the id of the last frame seen, RUN-N).

import { ApiError, headers } from "./api.js";

/** Splits Server-Sent Events text into frames: {event, data, id}. */
export class SseParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  /** Take the next piece of the stream's text. */
  feed(text) {
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) return;
      if (match[0] === "\r" && match.index === this.buffer.length - 1) return; // maybe \r\n
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0 || this.event) {
        this.onFrame({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the keepalive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    resolve();
  }, { once: true });
});

/**
 * The daemon's event stream: `onEvent(name, data, id)` for each event
 * (data parsed from JSON), `onStatus(text)` when the connection changes
 * ("connecting", "live", "reconnecting", "offline"), `onDenied()` on a 401,
 * `onRefused(error)` on another 4xx (a job gone, an id it can't resume from). With
 * `logs` (a guid) it also carries that job's output lines. Resumes from
 * `lastId` (the last id seen, kept across restarts of the stream).
 */
export class EventStream {
  constructor({
    onEvent, onStatus = () => {}, onDenied = () => {}, onRefused = () => {}, logs = null,
    lastId = null,
  }) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onDenied = onDenied;
    this.onRefused = onRefused;
    this.logs = logs;
    this.lastId = lastId;
    this.abort = null;
  }

  /** Begin reading, and keep reading (reconnecting after a drop) until stop(). */
  start() {
    this.stop();
    this.abort = new AbortController();
    this.run(this.abort.signal);
  }

  stop() {
    if (this.abort !== null) this.abort.abort();
    this.abort = null;
  }

  async run(signal) {
    let delay = 500;
    while (!signal.aborted) {
      this.onStatus("connecting");
      try {
        await this.read(signal);
        delay = 500; // ended by the daemon (it does so for a slow reader): resume soon
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          this.onStatus("offline"); // asking again would get the same answer
          if (error.status === 401) this.onDenied();
          else this.onRefused(error);
          return;
        }
        delay = Math.min(delay * 2, 15000);
      }
      if (signal.aborted) return;
      this.onStatus("reconnecting");
      await sleep(delay, signal);
    }
  }

  async read(signal) {
    const sent = headers({ Accept: "text/event-stream" });
    if (this.lastId) sent["Last-Event-ID"] = this.lastId;
    const url = this.logs === null ? "/events" : `/events?logs=${encodeURIComponent(this.logs)}`;
    const response = await fetch(url, {
      headers: sent, signal, cache: "no-store", credentials: "omit", redirect: "error",
    });
    if (!response.ok) throw new ApiError(response.status, response.statusText);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser((frame) => this.frame(frame));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        parser.feed(value);
      }
    } finally {
      reader.releaseLock();
    }
  }

  frame({ event, data, id }) {
    if (id) this.lastId = id;
    let parsed = null;
    try {
      parsed = data ? JSON.parse(data) : null;
    } catch {
      parsed = { text: data };
    }
    if (event === "open") {
      // Resume from here if this first stream drops before any event came.
      if (!this.lastId && parsed && typeof parsed.last === "string") this.lastId = parsed.last;
      this.onStatus("live");
    }
    this.onEvent(event, parsed, id);
  }
}
