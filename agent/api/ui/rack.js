// The rack view: one tile per configured phone, grouped by hub (the
// usb_port's parent path, as GET /hubs names them) in port order, coloured by
// health, with a hatched "NOT DEVICE" mark when the adb state is anything but
// `device`; and the counts per health for the header.

import {el, timer} from "./dom.js";

export const HEALTHS = ["ready", "busy", "resetting", "needs_attention"];
const HEALTH_WORDS = {ready: "ready", busy: "busy", resetting: "resetting", needs_attention: "needs attention"};

export function healthWords(health) {
  return HEALTH_WORDS[health] || health;
}

// The agent's rule (GET /hubs): "1-1.4" -> "1-1"; a root-hub port "1-4" -> "usb1".
export function hubOf(usbPort) {
  if (!usbPort) return null;
  const dot = usbPort.lastIndexOf(".");
  if (dot >= 0) return usbPort.slice(0, dot);
  const dash = usbPort.indexOf("-");
  return "usb" + (dash >= 0 ? usbPort.slice(0, dash) : usbPort);
}

// Port paths compared number by number: 1-1.2 < 1-1.10.
function comparePorts(a, b) {
  const pa = a.split(/[-.]/).map(Number);
  const pb = b.split(/[-.]/).map(Number);
  for (let i = 0; i < Math.min(pa.length, pb.length); ++i) {
    if (pa[i] !== pb[i]) return (pa[i] || 0) - (pb[i] || 0);
  }
  return pa.length - pb.length;
}

function naturalCompare(a, b) {
  return a.localeCompare(b, "en", {numeric: true});
}

// [{hub, phones: [...]}], hubs in port order, then the phones on no hub.
export function groupByHub(phones) {
  const groups = new Map();
  for (const phone of phones) {
    const hub = hubOf(phone.usb_port);
    if (!groups.has(hub)) groups.set(hub, []);
    groups.get(hub).push(phone);
  }
  const hubs = [...groups.keys()].filter((h) => h !== null).sort(naturalCompare);
  const out = hubs.map((hub) => ({
    hub,
    phones: groups.get(hub).sort((a, b) => comparePorts(a.usb_port, b.usb_port) || naturalCompare(a.phone_id, b.phone_id)),
  }));
  if (groups.has(null)) {
    out.push({hub: null, phones: groups.get(null).sort((a, b) => naturalCompare(a.phone_id, b.phone_id))});
  }
  return out;
}

export function countsByHealth(phones) {
  const counts = Object.fromEntries(HEALTHS.map((h) => [h, 0]));
  let notDevice = 0;
  for (const phone of phones) {
    counts[phone.health] = (counts[phone.health] || 0) + 1;
    if (phone.adb_state !== "device") ++notDevice;
  }
  return {counts, notDevice};
}

export function renderCounts(container, phones) {
  const {counts, notDevice} = countsByHealth(phones);
  container.replaceChildren(
      ...HEALTHS.map((h) => el("span", {class: `count h-${h}`, "data-health": h},
                               el("b", {class: "count-n", text: String(counts[h])}), ` ${healthWords(h)}`)),
      el("span", {class: "count not-device", "data-health": "not_device"},
         el("b", {class: "count-n", text: String(notDevice)}), " not on adb"));
}

// The last reset in a few characters (the tile's corner); the phone page
// has the whole record.
function lastResetWords(reset) {
  if (!reset) return null;
  const marks = {succeeded: "reset ok", failed: "reset FAILED", pending: "reset …", running: "reset …",
                 recorded: reset.trigger};
  return marks[reset.status] || `reset ${reset.status}`;
}

// One tile. `startedAt` is the current item's started_at, when known.
//   phone_07              reset ok
//   ⚠ OFFLINE                 q 2
//   p-123 · q0            12:04
export function renderTile(phone, startedAt) {
  const notDevice = phone.adb_state !== "device";
  const classes = ["tile", `h-${phone.health}`];
  if (notDevice) classes.push("not-device");
  const tile = el("a", {
    class: classes.join(" "),
    href: `#/phone/${encodeURIComponent(phone.phone_id)}`,
    id: `tile-${phone.phone_id}`,
    "data-phone": phone.phone_id,
    "data-health": phone.health,
    "data-adb": phone.adb_state,
    title: `${phone.phone_id}: ${healthWords(phone.health)}, adb ${phone.adb_state}` +
           (phone.attention ? ` — ${phone.attention.detail}` : ""),
  });
  const reset = lastResetWords(phone.last_reset);
  tile.append(el("div", {class: "t-line"},
                 el("span", {class: "t-id", text: phone.phone_id}),
                 reset ? el("span", {class: `t-reset r-${phone.last_reset.status}`, text: reset}) : null));
  tile.append(el("div", {class: "t-line"},
                 el("span", {class: "t-adb", text: notDevice ? `⚠ ${phone.adb_state.toUpperCase()}` : "device"}),
                 el("span", {class: "t-queue", title: "queue depth", text: `q ${phone.queue_depth}`})));
  if (phone.current) {
    tile.append(el("div", {class: "t-line t-work"},
                   el("span", {class: "t-proc", text: `${phone.current.process_id} · ${phone.current.queue_item_id}`}),
                   startedAt ? timer(startedAt) : null));
  } else {
    tile.append(el("div", {class: "t-line t-idle", text: healthWords(phone.health)}));
  }
  return tile;
}

export function renderRack(container, phones, startedAtOf) {
  const groups = groupByHub(phones);
  const sections = groups.map(({hub, phones: members}) =>
    el("section", {class: "hub", "data-hub": hub || "none"},
       el("h2", {class: "hub-name", title: hub ? `USB hub ${hub}` : "phones without a usb_port",
                 text: hub ? hub : "no hub"}),
       el("div", {class: "tiles"}, ...members.map((p) => renderTile(p, startedAtOf(p))))));
  if (sections.length === 0) {
    sections.push(el("p", {class: "empty", text: "No phones are configured ([[phones]] in the agent's config)."}));
  }
  container.replaceChildren(el("div", {class: "rack", id: "rack"}, ...sections));
}
