// Small DOM and formatting helpers shared by the views. Every text from the
// agent goes in through textContent, never as HTML.

import {clockSkewMs} from "./api.js";

// el("div", {class: "x", href: "#/"}, child, "text", ...)
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The agent's clock now, in ms since the epoch.
export function agentNow() {
  return Date.now() + clockSkewMs;
}

// 75 s -> "1:15", 3725 s -> "1:02:05".
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

// A running timer: a span the page's one-second tick keeps up to date.
export function timer(sinceIso) {
  const since = Date.parse(sinceIso);
  const span = el("span", {class: "timer", "data-since": String(since)});
  span.textContent = formatDuration(agentNow() - since);
  return span;
}

export function tickTimers(root) {
  const now = agentNow();
  for (const span of root.querySelectorAll(".timer[data-since]")) {
    span.textContent = formatDuration(now - Number(span.dataset.since));
  }
}

// "2026-12-03T21:40:00.123Z" -> "2026-12-03 21:40:00" (UTC, as the agent logs).
export function formatTime(iso) {
  if (!iso) return "-";
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function show(value) {
  return value === null || value === undefined || value === "" ? "-" : String(value);
}

export function table(headers, rows, cls) {
  return el("table", {class: cls || "grid"},
            el("thead", null, el("tr", null, ...headers.map((h) => el("th", {text: h})))),
            el("tbody", null, ...rows));
}

export function row(...cells) {
  return el("tr", null, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", null, c))));
}
