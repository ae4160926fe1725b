// The page's entry point: sign-in (GET /whoami decides what to show), the
// rack's state kept live from GET /events, and the routes #/ (rack),
// #/phone/ID and #/process/ID. Nothing here reloads the page: an event
// re-reads just the phone or process it concerns.

import {AuthError, EventStream, callJson, forgetToken, storeToken, storedToken} from "./api.js";
import {PhonePage, ProcessPage} from "./detail.js";
import {el, tickTimers} from "./dom.js";
import {renderCounts, renderRack, renderTile} from "./rack.js";

const state = {
  who: null,          // {name, scope}
  phones: new Map(),  // phone_id -> phone object (GET /phones)
  started: new Map(), // phone_id -> {key: "process/item", at: started_at} of the current item
  stream: null,
  page: null,         // the open PhonePage or ProcessPage
  pending: new Map(), // phone_id -> timer of a coalesced re-read
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ sign-in

function showLogin(message) {
  if (state.stream) state.stream.stop();
  state.stream = null;
  state.who = null;
  $("view").replaceChildren();
  $("counts").replaceChildren();
  $("who").textContent = "";
  $("forget").hidden = true;
  setLive("offline", false);
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token-input").value = "";
  $("token-input").focus();
}

// True (and back to the sign-in form) when `err` is a refused token.
function authFailed(err) {
  if (!(err instanceof AuthError)) return false;
  forgetToken();
  showLogin(err.message);
  return true;
}

async function signIn() {
  try {
    state.who = await callJson("GET", "/whoami");
  } catch (err) {
    if (authFailed(err)) return;
    showLogin(`The agent could not be asked who this token is: ${err.message}`);
    return;
  }
  $("login").hidden = true;
  $("who").textContent = `${state.who.name} (${state.who.scope})`;
  document.body.dataset.scope = state.who.scope;
  $("forget").hidden = false;
  await startLive();
}

function context() {
  return {
    who: state.who,
    canOperate: state.who && (state.who.scope === "operate" || state.who.scope === "schedule"),
    authFailed,
  };
}

// --------------------------------------------------------------- live state

function setLive(text, live) {
  const badge = $("live");
  badge.textContent = text;
  badge.className = `live ${live ? "live-on" : "live-off"}`;
  badge.dataset.live = live ? "1" : "0";
}

async function loadAllPhones() {
  const body = await callJson("GET", "/phones");
  state.phones = new Map((body.phones || []).map((p) => [p.phone_id, p]));
  await Promise.all([...state.phones.values()].map((p) => learnStart(p)));
}

// The running timer needs the current item's started_at, which the phone
// object does not carry: read it from the process once per item.
async function learnStart(phone) {
  if (!phone.current) {
    state.started.delete(phone.phone_id);
    return;
  }
  const key = `${phone.current.process_id}/${phone.current.queue_item_id}`;
  const known = state.started.get(phone.phone_id);
  if (known && known.key === key) return;
  try {
    const p = await callJson("GET", `/processes/${encodeURIComponent(phone.current.process_id)}`);
    const item = (p.queue_items || []).find((i) => i.queue_item_id === phone.current.queue_item_id);
    if (item && item.started_at) state.started.set(phone.phone_id, {key, at: item.started_at});
  } catch (err) {
    authFailed(err);
  }
}

function startedAtOf(phone) {
  const s = state.started.get(phone.phone_id);
  return s && phone.current && s.key === `${phone.current.process_id}/${phone.current.queue_item_id}` ? s.at : null;
}

async function startLive() {
  // The position first, then the state, then the stream from that position:
  // a change between the two reads arrives as an event, none is missed.
  let after;
  try {
    after = (await callJson("GET", "/events?wait=0")).next;
    await loadAllPhones();
  } catch (err) {
    if (!authFailed(err)) $("view").replaceChildren(el("p", {class: "error", text: `Cannot read the rack: ${err.message}`}));
    return;
  }
  route();
  state.stream = new EventStream({
    after,
    onEvent,
    onResync: () => resync(),
    onStatus: setLive,
    onAuthError: () => authFailed(new AuthError()),
  });
  state.stream.start();
}

async function resync() {
  try {
    await loadAllPhones();
    redrawRack();
    if (state.page) state.page.refresh();
  } catch (err) {
    authFailed(err);
  }
}

// Every minute, the whole rack once more (one GET /phones): a tile that
// differs from it is redrawn. Events keep the rack current; this bounds how
// long anything they could not carry (a phone's drops count) stays stale.
async function recheck() {
  if (!state.who || !state.stream) return;
  try {
    const body = await callJson("GET", "/phones");
    for (const phone of body.phones || []) {
      const old = state.phones.get(phone.phone_id);
      if (old && JSON.stringify(old) === JSON.stringify(phone)) continue;
      state.phones.set(phone.phone_id, phone);
      await learnStart(phone);
      updateTile(phone);
    }
  } catch (err) {
    authFailed(err);
  }
}

function onEvent(event) {
  if (event.kind === "item.started" && event.phone_id && event.process_id && event.queue_item_id) {
    state.started.set(event.phone_id, {key: `${event.process_id}/${event.queue_item_id}`, at: event.time});
  }
  if (event.phone_id) {
    applyToTile(event);
    scheduleRefresh(event.phone_id);
  }
  if (state.page && state.page.concerns(event)) state.page.refresh();
}

// A reset starting and a phone's attention change show on the tile at once,
// from the event itself; the re-read that follows brings the rest.
function applyToTile(event) {
  const phone = state.phones.get(event.phone_id);
  const p = event.payload || {};
  if (!phone) return;
  if (event.kind === "reset.started") {
    phone.last_reset = {reset_id: event.reset_id, trigger: p.trigger, status: p.status, reason: p.reason,
                        requested_at: event.time, ended_at: null, steps: []};
    if (phone.health !== "needs_attention") phone.health = "resetting";
  } else if (event.kind === "phone.attention") {
    phone.attention = p.reason ? {reason: p.reason, detail: p.detail, since: event.time} : null;
    if (p.reason) phone.health = "needs_attention";
  } else {
    return;
  }
  updateTile(phone);
}

// Events come in bursts (an item ends, the next starts): one re-read each.
function scheduleRefresh(phoneId) {
  if (state.pending.has(phoneId)) return;
  state.pending.set(phoneId, setTimeout(async () => {
    state.pending.delete(phoneId);
    try {
      const phone = await callJson("GET", `/phones/${encodeURIComponent(phoneId)}`);
      state.phones.set(phoneId, phone);
      await learnStart(phone);
      updateTile(phone);
    } catch (err) {
      authFailed(err);
    }
  }, 100));
}

function updateTile(phone) {
  renderCounts($("counts"), [...state.phones.values()]);
  const old = document.getElementById(`tile-${phone.phone_id}`);
  if (old) old.replaceWith(renderTile(phone, startedAtOf(phone)));
}

function redrawRack() {
  renderCounts($("counts"), [...state.phones.values()]);
  const rack = $("rack");
  if (rack) renderRack($("view"), [...state.phones.values()], startedAtOf);
}

// ------------------------------------------------------------------- routes

function route() {
  if (!state.who) return;
  if (state.page && state.page.close) state.page.close();
  state.page = null;
  const hash = decodeURIComponent(location.hash || "#/");
  const phone = hash.match(/^#\/phone\/(.+)$/);
  const proc = hash.match(/^#\/process\/(.+)$/);
  renderCounts($("counts"), [...state.phones.values()]);
  if (phone) state.page = new PhonePage(context(), phone[1]);
  else if (proc) state.page = new ProcessPage(context(), proc[1]);
  if (state.page) {
    $("view").replaceChildren(state.page.root);
    state.page.refresh();
  } else {
    renderRack($("view"), [...state.phones.values()], startedAtOf);
  }
  window.scrollTo(0, 0);
}

// --------------------------------------------------------------------- boot

function boot() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    storeToken(token);
    $("token-input").value = "";
    $("login-error").textContent = "checking…";
    signIn();
  });
  $("forget").addEventListener("click", () => {
    forgetToken();
    showLogin("Token forgotten.");
  });
  window.addEventListener("hashchange", route);
  setInterval(() => tickTimers(document), 1000);
  setInterval(recheck, 60000);
  if (storedToken()) signIn();
  else showLogin("");
}

boot();
