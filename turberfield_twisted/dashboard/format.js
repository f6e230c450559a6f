// How values read on the page.

/** Every job state, in lifecycle order, and what it means (a title on its badge). */
export const STATES = {
  waiting: "waiting for a starting slot",
  starting: "spawned, not yet answering",
  ready: "running and healthy",
  stopping: "asked to stop",
  exited: "ended",
  backoff: "ended unasked: waiting to restart",
  failed: "restarted too often: down until restarted by hand",
};

/** States in which a job has (or is about to have) a process. */
export const RUNNING = new Set(["starting", "ready", "stopping"]);

/** "1h 02m" style duration of `seconds` (null: "—"). */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, "0")}h`;
}

/** Bytes as KiB/MiB/GiB (null: "—"). */
export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** CPU seconds (null: "—"). */
export function cpu(seconds) {
  return seconds === null || seconds === undefined ? "—" : `${seconds.toFixed(2)} s`;
}

/** A Unix time as local HH:MM:SS.mmm. */
export function clock(time) {
  if (time === null || time === undefined) return "—";
  const d = new Date(time * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.` +
    String(d.getMilliseconds()).padStart(3, "0");
}

/** A Unix time as a local date and time. */
export function when(time) {
  return time === null || time === undefined ? "—" : new Date(time * 1000).toLocaleString();
}

/** The short form of a guid, as the command line shows it. */
export function short(guid) {
  return guid.length > 12 ? guid.slice(0, 8) : guid;
}

/** A value for a cell: null and undefined read as "—". */
export function text(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}
