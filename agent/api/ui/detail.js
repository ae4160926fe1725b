// The phone and process pages: what a technician needs to decide, and the
// two actions (Reset, Cancel) for an operate token. Each page re-reads its
// objects when an event concerns them (app.js calls refresh()).

import {callJson, fetchLog} from "./api.js";
import {el, formatTime, row, show, table, timer} from "./dom.js";
import {healthWords, hubOf} from "./rack.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const enc = encodeURIComponent;

function requestedBy(ctx) {
  return {system: "rack-page", user: ctx.who.name, metadata: {}};
}

function processLink(id) {
  return el("a", {href: `#/process/${enc(id)}`, text: id});
}

function errorLine(e) {
  return e && e.detail !== undefined ? `${e.status}: ${e.detail}` : String(e && e.message ? e.message : e);
}

// ---------------------------------------------------------------- phone page

export class PhonePage {
  constructor(ctx, phoneId) {
    this.ctx = ctx;
    this.phoneId = phoneId;
    this.root = el("div", {class: "page phone-page", id: "phone-page"});
    this.summary = el("div", {class: "summary"});
    this.actions = el("div", {class: "actions"});
    this.processes = el("div", {class: "block"});
    this.resets = el("div", {class: "block"});
    this.root.append(
        el("p", {class: "crumbs"}, el("a", {href: "#/", text: "rack"}), ` / phone ${phoneId}`),
        this.summary, this.actions,
        el("h2", {text: "Recent processes"}), this.processes,
        el("h2", {text: "Reset history"}), this.resets);
    if (ctx.canOperate) this.actions.append(this.resetForm());
  }

  concerns(event) {
    return event.phone_id === this.phoneId;
  }

  resetForm() {
    const reason = el("input", {id: "reset-reason", type: "text", required: true, maxlength: "1000",
                                placeholder: "why (recorded with the reset)"});
    const result = el("p", {id: "reset-result", class: "result", role: "status"});
    const form = el("form", {id: "reset-form", class: "action-form"},
                    el("label", {for: "reset-reason", text: "Reason"}), reason,
                    el("button", {id: "reset-submit", type: "submit", class: "danger", text: "Reset phone"}),
                    result);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) {
        result.textContent = "A reason is required.";
        return;
      }
      result.textContent = "requesting…";
      try {
        const r = await callJson("POST", `/phones/${enc(this.phoneId)}/reset`,
                                 {reason: reason.value.trim(), requested_by: requestedBy(this.ctx)});
        result.textContent = `reset ${r.reset_id} ${r.status} (trigger ${r.trigger})`;
        reason.value = "";
        this.refresh();
      } catch (err) {
        if (!this.ctx.authFailed(err)) result.textContent = `Reset refused: ${errorLine(err)}`;
      }
    });
    return form;
  }

  async refresh() {
    const id = enc(this.phoneId);
    try {
      const [phone, procs, resets] = await Promise.all([
        callJson("GET", `/phones/${id}`),
        callJson("GET", `/processes?phone_id=${id}&limit=20`),
        callJson("GET", `/phones/${id}/resets?limit=20`),
      ]);
      this.renderSummary(phone);
      this.renderProcesses(procs.processes || []);
      this.renderResets(resets.resets || []);
    } catch (err) {
      if (!this.ctx.authFailed(err)) this.summary.replaceChildren(el("p", {class: "error", text: errorLine(err)}));
    }
  }

  renderSummary(p) {
    const attention = p.attention ?
      el("div", {class: "attention", id: "attention"},
         el("b", {text: `Needs attention: ${p.attention.reason}`}), ` — ${p.attention.detail} (since ${formatTime(p.attention.since)})`) :
      null;
    this.summary.replaceChildren(
        el("h1", {class: `h-${p.health}`, text: `${p.phone_id}`}),
        attention,
        el("dl", {class: "facts"},
           el("dt", {text: "health"}), el("dd", {text: healthWords(p.health)}),
           el("dt", {text: "adb state"}), el("dd", {class: p.adb_state === "device" ? "" : "bad", text: p.adb_state}),
           el("dt", {text: "serial"}), el("dd", {text: show(p.serial)}),
           el("dt", {text: "usb port"}), el("dd", {text: `${show(p.usb_port)} (hub ${show(hubOf(p.usb_port))})`}),
           el("dt", {text: "current"}), el("dd", null, p.current ? processLink(p.current.process_id) : "-",
                                          p.current ? ` item ${p.current.queue_item_id}` : ""),
           el("dt", {text: "queue depth"}), el("dd", {text: String(p.queue_depth)}),
           el("dt", {text: "drops"}),
           el("dd", {text: p.drops ? `${p.drops.count} in ${p.drops.window_seconds} s (last ${formatTime(p.drops.last_at)})` : "-"})));
  }

  renderProcesses(list) {
    if (list.length === 0) return this.processes.replaceChildren(el("p", {class: "empty", text: "none"}));
    this.processes.replaceChildren(table(
        ["process", "status", "items", "created", "updated"],
        list.map((p) => row(processLink(p.process_id), el("td", {class: `s-${p.status}`, text: p.status}),
                            String((p.queue_items || []).length), formatTime(p.created_at), formatTime(p.updated_at)))));
  }

  renderResets(list) {
    if (list.length === 0) return this.resets.replaceChildren(el("p", {class: "empty", text: "none"}));
    this.resets.replaceChildren(...list.map((r) => el("div", {class: "reset", "data-reset": r.reset_id},
        el("p", null, el("b", {class: `s-${r.status}`, text: r.status}),
           ` ${r.trigger} · ${formatTime(r.requested_at)}` + (r.reason ? ` · “${r.reason}”` : "") +
           (r.requested_by && r.requested_by.user ? ` · by ${r.requested_by.user}` : "")),
        (r.steps || []).length === 0 ? null : table(
            ["step", "status", "started", "ended", "detail"],
            r.steps.map((s) => row(s.step, el("td", {class: `s-${s.status}`, text: s.status}),
                                   formatTime(s.started_at), formatTime(s.ended_at), show(s.detail))), "grid steps"))));
  }
}

// -------------------------------------------------------------- process page

// The cancel answer in words, as `phonefarmctl cancel` prints it.
export function describeCancel(r) {
  const pstatus = r.process ? r.process.status : "-";
  if (r.status === "ignored_terminal") return `ignored: process already ${pstatus}`;
  const parts = [];
  const n = (r.cancelled_queue_item_ids || []).length;
  parts.push(n === 0 ? "no pending items cancelled" : `${n} pending item${n === 1 ? "" : "s"} cancelled`);
  const t = r.termination;
  if (t) {
    const active = r.active_target && r.active_target.queue_item_id ? r.active_target.queue_item_id : "-";
    if (t.status === "not_needed") parts.push("nothing was executing");
    else if (t.status === "requested") parts.push(`stop notice sent to item ${active}`);
    else if (t.status === "scheduled") parts.push(`stop notice sent to item ${active}; force kill at ${t.force_at}`);
    else if (t.status === "issued") {
      parts.push("kill issued" + (t.container ? ` to container ${t.container.id} (${t.container.runtime})` : ""));
    } else if (t.status === "failed") parts.push(`kill could not be issued: ${show(t.error)}`);
    else parts.push(`termination ${t.status}`);
    if (t.phone_reset) parts.push(`phone reset ${t.phone_reset.reset_id} ${t.phone_reset.status}`);
  }
  parts.push(`process now ${pstatus}`);
  return `${r.status}: ${parts.join("; ")}`;
}

// The running (or last run) item's stdout and stderr, followed while it runs.
class LogTail {
  constructor(ctx) {
    this.ctx = ctx;
    this.key = null;
    this.root = el("div", {class: "logs", id: "logs"});
    this.timer = null;
  }

  follow(processId, item) {
    const key = item ? `${processId}/${item.queue_item_id}` : null;
    if (key === this.key) {
      if (item) this.running = item.status === "executing";
      return;
    }
    this.stop();
    this.key = key;
    if (!item) return this.root.replaceChildren();
    this.running = item.status === "executing";
    this.streams = ["stdout", "stderr"].map((name) => ({
      name, offset: 0, decoder: new TextDecoder(), pre: el("pre", {class: "log", id: `log-${name}`}),
    }));
    this.root.replaceChildren(el("h2", {text: `Output of item ${item.queue_item_id}`}),
                              ...this.streams.map((s) => el("div", {class: "log-box"}, el("h3", {text: s.name}), s.pre)));
    this.poll(processId, item.queue_item_id, key);
  }

  async poll(processId, itemId, key) {
    let more = false;
    for (const s of this.streams) {
      try {
        // Up to 1 MiB an answer: read until this round has caught up.
        for (let i = 0; i < 8; ++i) {
          const r = await fetchLog(processId, itemId, s.name, s.offset, s.decoder);
          if (this.key !== key) return;
          s.offset = r.next;
          if (r.text) this.append(s.pre, r.text);
          more = more || r.more;
          if (!r.more || !r.text) break;
        }
      } catch (err) {
        if (this.ctx.authFailed(err)) return;
      }
    }
    if (this.key !== key) return;
    if (more || this.running) this.timer = setTimeout(() => this.poll(processId, itemId, key), 1000);
  }

  append(pre, text) {
    // Keep the last 256 KiB on screen.
    const next = (pre.textContent + text).slice(-262144);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = next;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  stop() {
    clearTimeout(this.timer);
    this.key = null;
  }
}

export class ProcessPage {
  constructor(ctx, processId) {
    this.ctx = ctx;
    this.processId = processId;
    this.root = el("div", {class: "page process-page", id: "process-page"});
    this.summary = el("div", {class: "summary"});
    this.actions = el("div", {class: "actions"});
    this.items = el("div", {class: "block"});
    this.cancel = el("div", {class: "block"});
    this.audit = el("div", {class: "block"});
    this.logs = new LogTail(ctx);
    this.root.append(el("p", {class: "crumbs"}, el("a", {href: "#/", text: "rack"}), ` / process ${processId}`),
                     this.summary, this.actions,
                     el("h2", {text: "Items"}), this.items,
                     el("h2", {text: "Cancel"}), this.cancel,
                     el("h2", {text: "Cancel audit trail"}), this.audit,
                     this.logs.root);
    if (ctx.canOperate) {
      this.form = this.cancelForm();
      this.actions.append(this.form);
    }
  }

  concerns(event) {
    return event.process_id === this.processId;
  }

  close() {
    this.logs.stop();
  }

  cancelForm() {
    const strategy = el("select", {id: "cancel-strategy"},
                        el("option", {value: "soft_then_force", text: "soft, then force"}),
                        el("option", {value: "soft", text: "soft (stop notice only)"}),
                        el("option", {value: "hard", text: "hard (kill now)"}));
    const delay = el("input", {id: "cancel-delay", type: "number", min: "0", max: "2147483647", step: "1", value: "10"});
    const delayField = el("span", {class: "delay"}, el("label", {for: "cancel-delay", text: "force after (s)"}), delay);
    strategy.addEventListener("change", () => {
      delayField.hidden = strategy.value !== "soft_then_force";
    });
    const reason = el("input", {id: "cancel-reason", type: "text", required: true, maxlength: "1000",
                                placeholder: "why (recorded in the audit trail)"});
    const result = el("p", {id: "cancel-result", class: "result", role: "status"});
    const form = el("form", {id: "cancel-form", class: "action-form"},
                    el("label", {for: "cancel-strategy", text: "Strategy"}), strategy, delayField,
                    el("label", {for: "cancel-reason", text: "Reason"}), reason,
                    el("button", {id: "cancel-submit", type: "submit", class: "danger", text: "Cancel process"}),
                    result);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) {
        result.textContent = "A reason is required.";
        return;
      }
      const body = {reason: reason.value.trim(), strategy: strategy.value, requested_by: requestedBy(this.ctx)};
      if (strategy.value === "soft_then_force") {
        const seconds = Number(delay.value);
        if (!Number.isInteger(seconds) || seconds < 0) {
          result.textContent = "The delay is a whole number of seconds, 0 or more.";
          return;
        }
        body.force_after_seconds = seconds;
      }
      result.textContent = "requesting…";
      try {
        const r = await callJson("POST", `/processes/${enc(this.processId)}/cancel`, body);
        result.textContent = describeCancel(r);
        reason.value = "";
        this.refresh();
      } catch (err) {
        if (!this.ctx.authFailed(err)) result.textContent = `Cancel refused: ${errorLine(err)}`;
      }
    });
    return form;
  }

  async refresh() {
    try {
      const p = await callJson("GET", `/processes/${enc(this.processId)}`);
      this.render(p);
    } catch (err) {
      if (!this.ctx.authFailed(err)) this.summary.replaceChildren(el("p", {class: "error", text: errorLine(err)}));
    }
  }

  render(p) {
    const items = p.queue_items || [];
    this.summary.replaceChildren(
        el("h1", null, `${p.process_id} `, el("span", {id: "process-status", class: `badge s-${p.status}`, text: p.status})),
        el("dl", {class: "facts"},
           el("dt", {text: "phone"}), el("dd", null, el("a", {href: `#/phone/${enc(p.phone_id)}`, text: p.phone_id})),
           el("dt", {text: "account"}), el("dd", {text: show(p.account_id)}),
           el("dt", {text: "requested by"}),
           el("dd", {text: p.requested_by ? `${show(p.requested_by.system)} ${show(p.requested_by.user)}` : "-"}),
           el("dt", {text: "created"}), el("dd", {text: formatTime(p.created_at)}),
           el("dt", {text: "updated"}), el("dd", {text: formatTime(p.updated_at)}),
           el("dt", {text: "waiting for"}), el("dd", {text: show(p.waiting_for)})));
    if (this.form) this.form.hidden = TERMINAL.has(p.status);
    this.items.replaceChildren(table(
        ["#", "item", "status", "command", "started", "ended", "exit", "signal", "note"],
        items.map((i) => row(String(i.position), i.queue_item_id,
                             el("td", {class: `s-${i.status}`, "data-item-status": i.status},
                                i.status, i.status === "executing" && i.started_at ? el("span", null, " ", timer(i.started_at)) : null),
                             el("td", {class: "cmd", text: (i.command || []).join(" ")}),
                             formatTime(i.started_at), formatTime(i.ended_at), show(i.exit_code), show(i.signal), show(i.note)))));
    const c = p.cancel;
    this.cancel.replaceChildren(c ?
      el("p", {id: "cancel-record"},
         `${c.strategy} at ${formatTime(c.requested_at)}` + (c.force_at ? `, force at ${formatTime(c.force_at)}` : "") +
         ` — “${c.reason}”` + (c.requested_by && c.requested_by.user ? ` by ${c.requested_by.user}` : "")) :
      el("p", {class: "empty", text: "not cancelled"}));
    const audit = p.cancel_audit || [];
    this.audit.replaceChildren(audit.length === 0 ? el("p", {class: "empty", text: "none"}) : table(
        ["requested", "endpoint", "strategy", "reason", "by", "outcome", "termination", "detail"],
        audit.map((a) => row(formatTime(a.requested_at), a.endpoint,
                             a.strategy + (a.strategy === "soft_then_force" ? ` (${show(a.force_after_seconds)} s)` : ""),
                             show(a.reason),
                             a.requested_by ? `${show(a.requested_by.system)} ${show(a.requested_by.user)}` : "-",
                             show(a.outcome), show(a.termination_status), show(a.detail))), "grid audit"));
    // Follow the executing item, else the last one that ran.
    const ran = items.filter((i) => i.started_at);
    const current = items.find((i) => i.status === "executing") || ran[ran.length - 1] || null;
    this.logs.follow(p.process_id, current);
  }
}
