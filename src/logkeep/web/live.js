// Live tail: new entries matching the search stream in (GET /api/v1/tail, Server-Sent
// Events, read with fetch so the Last-Event-ID header can be sent when reconnecting).
// Pause keeps receiving and counts what arrived; resume shows it. A dropped connection
// reconnects with back-off and resumes after the last event received, so nothing
// committed in between is lost.

import { ApiError, request } from "./api.js";
import { searchPairs } from "./state.js";

const MAX_ROWS = 5000; // rows kept in the list while live
const TAIL_PARAMS = new Set(["q", "contains", "source", "level", "min_level"]);

export class Live {
  constructor({ button, pause, status, arrivals, list, state, render }) {
    Object.assign(this, { button, pauseButton: pause, status, arrivals, list, state, render });
    this.on = false;
    this.paused = false;
    this.held = [];
    this.lastEventId = null;
    this.controller = null;
    this.failures = 0;
    button.addEventListener("click", () => (this.on ? this.stop() : this.start()));
    pause.addEventListener("click", () => (this.paused ? this.resume() : this.pause()));
  }

  params() {
    const p = new URLSearchParams();
    for (const [k, v] of searchPairs(this.state())) {
      if (TAIL_PARAMS.has(k) || k.startsWith("metadata.") || k.startsWith("not.metadata.")) p.append(k, v);
    }
    return p;
  }

  start() {
    this.on = true;
    this.paused = false;
    this.held = [];
    this.lastEventId = null;
    this.button.setAttribute("aria-pressed", "true");
    this.button.classList.add("on");
    this.pauseButton.hidden = false;
    this.pauseButton.textContent = "Pause";
    this.showArrivals();
    this.connect();
  }

  stop() {
    this.on = false;
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.button.setAttribute("aria-pressed", "false");
    this.button.classList.remove("on");
    this.pauseButton.hidden = true;
    this.setStatus("");
    this.flushHeld();
    this.arrivals.hidden = true;
  }

  // A new search while live: follow the new filters from now.
  restartIfOn() {
    if (!this.on) return;
    if (this.controller) this.controller.abort();
    this.held = [];
    this.lastEventId = null;
    this.showArrivals();
    this.connect();
  }

  pause() {
    this.paused = true;
    this.pauseButton.textContent = "Resume";
    this.showArrivals();
  }

  resume() {
    this.paused = false;
    this.pauseButton.textContent = "Pause";
    this.flushHeld();
    this.showArrivals();
  }

  flushHeld() {
    const held = this.held;
    this.held = [];
    for (const entry of held) this.insert(entry);
  }

  showArrivals() {
    const n = this.held.length;
    this.arrivals.hidden = !this.paused;
    this.arrivals.textContent = `Paused: ${n.toLocaleString()} new ${n === 1 ? "entry" : "entries"} since pausing`;
    this.arrivals.dataset.count = String(n);
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  insert(entry) {
    const empty = this.list.querySelector("li.empty");
    if (empty) empty.remove();
    if (this.list.querySelector(`li[data-entry-id="${CSS.escape(String(entry.id))}"]`)) return;
    const row = this.render(entry);
    row.classList.add("arrived");
    this.list.prepend(row);
    while (this.list.children.length > MAX_ROWS) this.list.lastElementChild.remove();
  }

  receive(entry) {
    if (this.paused) {
      this.held.push(entry);
      this.showArrivals();
    } else {
      this.insert(entry);
    }
  }

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    const headers = { Accept: "text/event-stream" };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    this.setStatus(this.failures ? "reconnecting…" : "connecting…");
    try {
      // Through the one API wrapper: an error answer becomes an ApiError with its reason.
      const response = await request(`/api/v1/tail?${this.params()}`, { headers, signal: controller.signal, raw: true });
      this.failures = 0;
      this.setStatus("live");
      document.body.dataset.live = "connected";
      await this.read(response.body, controller);
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) {
        this.stop(); // refused (signed out, a source no longer granted): retrying will not help
        this.setStatus(`live tail refused: ${error.message}`);
        return;
      }
      this.setStatus(`disconnected: ${error.message}`);
    }
    if (controller.signal.aborted || !this.on) return;
    // The stream ended (a server restart, a re-check of credentials): resume after the
    // last event received, after a back-off that grows with repeated failures.
    document.body.dataset.live = "reconnecting";
    this.failures += 1;
    const wait = Math.min(15000, 500 * 2 ** Math.min(this.failures - 1, 5));
    this.setStatus(`reconnecting in ${Math.round(wait / 1000)} s…`);
    setTimeout(() => { if (this.on && this.controller === controller) this.connect(); }, wait);
  }

  async read(body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { data: [] };
    while (!controller.signal.aborted) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r?\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer[newline] === "\r" ? 2 : 1));
        if (line === "") {
          this.dispatch(event);
          event = { data: [] };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") event.data.push(val);
          else if (field === "id") event.id = val;
          else if (field === "event") event.event = val;
        }
      }
    }
  }

  dispatch(event) {
    if (event.id) this.lastEventId = event.id;
    if (event.event !== "log" || !event.data.length) return;
    try {
      this.receive(JSON.parse(event.data.join("\n")));
    } catch {
      // not an entry: ignore
    }
  }
}
