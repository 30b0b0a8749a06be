// The entry drawer: every field, the metadata as a JSON tree (filter for / filter out on
// each value, copy), a permalink, and the entry's context: the lines before and after it
// in its source, loading more in either direction as the list scrolls.

import { get } from "./api.js";
import { $, clear, copyText, formatTime, h } from "./dom.js";
import { entryRow } from "./search.js";
import { stateUrl } from "./state.js";

const CONTEXT_STEP = 25;
const KEY = /^[A-Za-z0-9_-]{1,64}$/;

// The search parameter text that finds `value` (as the facets endpoint writes it).
export function filterText(value) {
  if (typeof value === "string") {
    const plain = !/^(true|false|null)$/.test(value) &&
      !/^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(value) &&
      !(value.length >= 2 && value.startsWith('"') && value.endsWith('"'));
    return plain ? value : JSON.stringify(value);
  }
  return JSON.stringify(value);
}

export class Detail {
  constructor({ onFilter, onClose, getState }) {
    this.onFilter = onFilter; // ({key, value, not}) => void
    this.onClose = onClose;
    this.getState = getState;
    this.entry = null;
    this.tab = "fields";
    $("detail-close").addEventListener("click", () => this.close());
    $("tab-fields").addEventListener("click", () => this.show("fields"));
    $("tab-context").addEventListener("click", () => this.show("context"));
  }

  get isOpen() {
    return !$("detail").hidden;
  }

  open(entry, tab = "fields") {
    this.entry = entry;
    $("detail").hidden = false;
    document.body.classList.add("detail-open");
    $("permalink").href = stateUrl({ ...this.getState(), entry: String(entry.id), entry_source: String(entry.source_id), entry_at: entry.timestamp });
    this.show(tab);
  }

  close() {
    if (!this.isOpen) return;
    $("detail").hidden = true;
    document.body.classList.remove("detail-open");
    this.entry = null;
    this.onClose();
  }

  show(tab) {
    this.tab = tab;
    $("tab-fields").setAttribute("aria-selected", String(tab === "fields"));
    $("tab-context").setAttribute("aria-selected", String(tab === "context"));
    const body = clear($("detail-body"));
    if (tab === "fields") this.renderFields(body);
    else new ContextList(body, this.entry, (e) => this.open(e, "fields"));
  }

  renderFields(body) {
    const e = this.entry;
    const copyAll = h("button", { type: "button", class: "small" }, "Copy JSON");
    copyAll.addEventListener("click", () => copyText(JSON.stringify(e, null, 2), copyAll));
    const copyMsg = h("button", { type: "button", class: "small" }, "Copy message");
    copyMsg.addEventListener("click", () => copyText(e.message, copyMsg));
    body.append(
      h("dl", { class: "fields" },
        h("dt", {}, "time"), h("dd", {}, h("time", { datetime: e.timestamp }, formatTime(e.timestamp)), h("span", { class: "muted" }, ` ${e.timestamp}`)),
        h("dt", {}, "level"), h("dd", {}, h("span", { class: `lvl-badge lvl-${String(e.level).toLowerCase()}` }, e.level)),
        h("dt", {}, "source"), h("dd", {}, `${e.source} (id ${e.source_id})`),
        h("dt", {}, "id"), h("dd", {}, String(e.id)),
        h("dt", {}, "ingested"), h("dd", {}, formatTime(e.ingested_at)),
      ),
      h("h3", {}, "message"),
      h("pre", { class: "message" }, e.message),
      h("div", { class: "row-actions" }, copyMsg, copyAll),
      h("h3", {}, "metadata"),
      Object.keys(e.metadata || {}).length ? this.tree(e.metadata, []) : h("p", { class: "muted" }, "none"),
    );
  }

  tree(value, path) {
    if (value !== null && typeof value === "object") {
      const isArray = Array.isArray(value);
      const list = h("ul", { class: "json-tree" });
      for (const [key, child] of Object.entries(value)) {
        const childPath = isArray ? null : [...(path || []), key];
        const filterable = !isArray && path !== null && childPath.every((k) => KEY.test(k)) && childPath.length <= 8;
        const label = h("span", { class: "json-key" }, isArray ? `[${key}]` : key);
        if (child !== null && typeof child === "object") {
          list.append(h("li", {}, h("details", { open: true }, h("summary", {}, label), this.tree(child, filterable ? childPath : null))));
        } else {
          list.append(h("li", {}, label, ": ", this.leaf(child, filterable ? childPath : null)));
        }
      }
      return list;
    }
    return this.leaf(value, null);
  }

  leaf(value, path) {
    const kind = value === null ? "null" : typeof value;
    const span = h("span", { class: "json-leaf" }, h("span", { class: `json-${kind}` }, kind === "string" ? JSON.stringify(value) : String(value)));
    const copy = h("button", { type: "button", class: "tiny", title: "Copy value", "aria-label": "Copy value" }, "copy");
    copy.addEventListener("click", () => copyText(typeof value === "string" ? value : JSON.stringify(value), copy));
    span.append(" ", copy);
    if (path) {
      const key = path.join(".");
      const text = filterText(value);
      span.append(
        h("button", { type: "button", class: "tiny", title: `Filter for metadata.${key}=${text}`, "aria-label": `Filter for metadata.${key}`,
          onclick: () => this.onFilter({ key, value: text, not: false }) }, "+ filter"),
        h("button", { type: "button", class: "tiny", title: `Filter out metadata.${key}=${text}`, "aria-label": `Filter out metadata.${key}`,
          onclick: () => this.onFilter({ key, value: text, not: true }) }, "− out"),
      );
    }
    return span;
  }
}

// Context: lines of the same source around an anchor, oldest at the top.
class ContextList {
  constructor(body, anchor, open) {
    this.anchor = anchor;
    this.open = open;
    this.olderButton = h("button", { type: "button", class: "small", onclick: () => this.load("before") }, "Load older");
    this.newerButton = h("button", { type: "button", class: "small", onclick: () => this.load("after") }, "Load newer");
    this.list = h("ol", { class: "results context", "aria-label": "Context" });
    this.status = h("p", { class: "note", "aria-live": "polite" });
    this.topSentinel = h("div", { class: "sentinel" });
    this.bottomSentinel = h("div", { class: "sentinel" });
    body.append(
      h("p", { class: "note" }, `Lines of ${anchor.source} around this entry, oldest first.`),
      this.olderButton, this.topSentinel, this.list, this.bottomSentinel, this.newerButton, this.status);
    this.first = anchor;
    this.last = anchor;
    this.busy = false;
    this.start();
  }

  async fetch(from, before, after) {
    return get(`/api/v1/logs/${from.id}/context`, { source: String(from.source_id), at: from.timestamp, before, after });
  }

  row(entry) {
    const li = entryRow(entry, null, (e) => this.open(e));
    if (entry.id === this.anchor.id && entry.source_id === this.anchor.source_id) li.classList.add("anchor");
    return li;
  }

  async start() {
    this.busy = true;
    try {
      const ctx = await this.fetch(this.anchor, CONTEXT_STEP, CONTEXT_STEP);
      this.list.append(...ctx.before.map((e) => this.row(e)), this.row(this.anchor), ...ctx.after.map((e) => this.row(e)));
      if (ctx.before.length) this.first = ctx.before[0];
      if (ctx.after.length) this.last = ctx.after[ctx.after.length - 1];
      this.moreBefore = ctx.more_before;
      this.moreAfter = ctx.more_after;
      this.buttons();
      this.list.querySelector("li.anchor").scrollIntoView({ block: "center" });
    } catch (error) {
      this.status.textContent = error.message;
    } finally {
      this.busy = false;
    }
    const observe = new IntersectionObserver((items) => {
      for (const item of items) {
        if (!item.isIntersecting) continue;
        if (item.target === this.topSentinel && this.moreBefore) this.load("before");
        if (item.target === this.bottomSentinel && this.moreAfter) this.load("after");
      }
    }, { root: $("detail-body"), rootMargin: "200px" });
    observe.observe(this.topSentinel);
    observe.observe(this.bottomSentinel);
  }

  buttons() {
    this.olderButton.hidden = !this.moreBefore;
    this.newerButton.hidden = !this.moreAfter;
    this.status.textContent = `${this.list.children.length} lines${this.moreBefore ? "" : "; the oldest retained"}${this.moreAfter ? "" : "; up to the newest"}`;
  }

  async load(direction) {
    if (this.busy) return;
    this.busy = true;
    try {
      if (direction === "before") {
        const ctx = await this.fetch(this.first, CONTEXT_STEP, 0);
        const scroller = $("detail-body");
        const height = scroller.scrollHeight;
        this.list.prepend(...ctx.before.map((e) => this.row(e)));
        scroller.scrollTop += scroller.scrollHeight - height; // keep the view still
        if (ctx.before.length) this.first = ctx.before[0];
        this.moreBefore = ctx.more_before;
      } else {
        const ctx = await this.fetch(this.last, 0, CONTEXT_STEP);
        this.list.append(...ctx.after.map((e) => this.row(e)));
        if (ctx.after.length) this.last = ctx.after[ctx.after.length - 1];
        this.moreAfter = ctx.more_after;
      }
      this.buttons();
    } catch (error) {
      this.status.textContent = error.message;
    } finally {
      this.busy = false;
    }
  }
}
