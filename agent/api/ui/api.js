// The page's link to the agent: the token (kept in sessionStorage for this
// tab only, sent as a bearer header, never put in a URL), JSON calls to the
// API, and the event stream read with fetch() streaming (EventSource cannot
// send the header), resumed with Last-Event-ID after a drop.

const TOKEN_KEY = "phonefarm.token";

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Thrown when the agent refuses the token (401): the page asks for another.
export class AuthError extends Error {
  constructor() {
    super("The agent did not accept this token (401 Not authenticated). " +
          "Check that it is copied whole and is still in the agent's tokens file.");
    this.name = "AuthError";
  }
}

// An answer other than 2xx, with the agent's `detail` in words.
export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

function detailText(body) {
  if (!body || body.detail === undefined) return "no detail";
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) {
    return body.detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  }
  return JSON.stringify(body.detail);
}

// Milliseconds to add to the browser's clock to get the agent's (from the
// Date header), so the running timers do not depend on the tablet's clock.
export let clockSkewMs = 0;

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const token = storedToken();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return headers;
}

// GET/POST a JSON endpoint; resolves to the parsed body, rejects with
// AuthError (401) or ApiError.
export async function callJson(method, path, body) {
  const headers = authHeaders({Accept: "application/json"});
  const init = {method, headers, cache: "no-store", credentials: "omit"};
  if (body !== undefined) {
    headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const date = response.headers.get("Date");
  if (date) clockSkewMs = Date.parse(date) - Date.now();
  if (response.status === 401) throw new AuthError();
  let parsed = null;
  try {
    parsed = await response.json();
  } catch (e) {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, detailText(parsed));
  return parsed;
}

// A slice of an item's log from `offset` (GET .../logs): the bytes as text
// through `decoder` (streaming, so a character split between two answers is
// kept whole), where to go on, and whether more can come.
export async function fetchLog(processId, itemId, stream, offset, decoder) {
  const path = `/processes/${encodeURIComponent(processId)}/items/${encodeURIComponent(itemId)}/logs` +
               `?stream=${stream}&offset=${offset}`;
  const response = await fetch(path, {headers: authHeaders(), cache: "no-store", credentials: "omit"});
  if (response.status === 401) throw new AuthError();
  if (!response.ok) throw new ApiError(response.status, "log not readable");
  const bytes = await response.arrayBuffer();
  const next = Number(response.headers.get("X-Phonefarm-Next-Offset") || offset);
  return {
    text: decoder.decode(bytes, {stream: true}),
    next,
    more: response.headers.get("X-Phonefarm-More") === "true",
  };
}

// GET /events as Server-Sent Events over fetch(). Calls onEvent(event) for
// each change, onResync() when events may have been missed (the agent's
// retention dropped them: the caller re-reads its state), onStatus(text,
// live) on connection changes, onAuthError() on a 401. Reconnects with
// Last-Event-ID = the last seq seen, so nothing is lost or repeated.
export class EventStream {
  constructor({after, onEvent, onResync, onStatus, onAuthError}) {
    this.lastSeq = after;
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onStatus = onStatus;
    this.onAuthError = onAuthError;
    this.stopped = false;
    this.controller = null;
    this.retryMs = 1000;
  }

  start() {
    this.run();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    while (!this.stopped) {
      let waitMs = this.retryMs;
      try {
        waitMs = await this.readOnce();
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof AuthError) {
          this.onAuthError();
          return;
        }
      }
      if (this.stopped) return;
      this.onStatus("reconnecting", false);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }

  // One connection; resolves to the delay before the next one.
  async readOnce() {
    this.controller = new AbortController();
    const headers = authHeaders({Accept: "text/event-stream"});
    if (this.lastSeq !== null && this.lastSeq !== undefined) headers.set("Last-Event-ID", String(this.lastSeq));
    const response = await fetch("/events", {
      headers, cache: "no-store", credentials: "omit", signal: this.controller.signal,
    });
    if (response.status === 401) throw new AuthError();
    if (response.status === 503) {
      // Too many streams open: the agent says when to try again.
      const after = Number(response.headers.get("Retry-After") || "5");
      this.onStatus("agent busy, retrying", false);
      return Math.min(Math.max(after, 1), 60) * 1000;
    }
    if (!response.ok || !response.body) return this.retryMs;
    this.onStatus("live", true);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    // A heartbeat comes every 15 s: silence for 45 s is a dead connection.
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => this.controller.abort(), 45000);
    };
    arm();
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        arm();
        buffer += decoder.decode(value, {stream: true}).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          this.dispatch(block);
        }
      }
    } catch (e) {
      if (this.stopped) throw e;
      // A dropped connection: resume below.
    } finally {
      clearTimeout(watchdog);
    }
    return this.retryMs;
  }

  dispatch(block) {
    let kind = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") kind = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
      else if (field === "retry") this.retryMs = Math.min(Math.max(Number(value) || 1000, 500), 30000);
    }
    if (data.length === 0) return;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch (e) {
      return;
    }
    if (kind === "overflow") {
      // We fell behind; the agent closes the stream: resume from its seq.
      this.lastSeq = payload.after;
      return;
    }
    if (id !== null) this.lastSeq = Number(id);
    if (kind === "reset") {
      // The seq we asked for is gone (retention): events were missed.
      this.onResync();
      return;
    }
    this.onEvent(payload);
  }
}
