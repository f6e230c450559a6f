// Calls to the control API, on this page's own origin, with the tab's token as
// a bearer header. The token is kept in this tab's sessionStorage only: never
// in a URL or a cookie (and cookies are not sent: credentials "omit").

const KEY = "proactor-admin-token";

/** An answer other than 2xx: its HTTP `status` and the API's `error` message. */
export class ApiError extends Error {
  constructor(status, reason) {
    super(status ? `${status}: ${reason}` : reason);
    this.name = "ApiError";
    this.status = status;
    this.reason = reason;
  }
}

/** The token of this tab (the admin token, or a named one of any role). */
export const token = {
  get() {
    return sessionStorage.getItem(KEY);
  },
  set(value) {
    sessionStorage.setItem(KEY, value);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** The headers every call sends. */
export function headers(more = {}) {
  return { Authorization: `Bearer ${token.get() ?? ""}`, ...more };
}

/**
 * `method` `path` (with a JSON `body` if given): the answer's JSON (null if
 * empty). Throws ApiError on an error status; a 401 also tells the page
 * (event "unauthorized" on window), which then asks for the token again.
 */
export async function call(method, path, body) {
  const init = {
    method,
    headers: headers({ Accept: "application/json" }),
    cache: "no-store",
    credentials: "omit",
    redirect: "error",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `the daemon could not be reached (${error.message})`);
  }
  const raw = await response.text();
  let data = null;
  try {
    data = raw ? JSON.parse(raw) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new Event("unauthorized"));
    const said = data && typeof data.error === "string" ? data.error : response.statusText;
    throw new ApiError(response.status, said || "error");
  }
  return data;
}

/** `/jobs/{guid}` and below, the guid escaped. */
export function jobPath(guid, rest = "") {
  return `/jobs/${encodeURIComponent(guid)}${rest}`;
}
