// The explore view: the search form and filters, the histogram, the facets and the
// results, newest first, loaded page after page through the API's keyset cursor as the
// list scrolls (no cap: every match can be reached).

import { ApiError, get } from "./api.js";
import { $, LEVELS, clear, formatTime, fromLocalInput, h, highlighted, highlighter, toLocalInput } from "./dom.js";
import { renderFacets } from "./facets.js";
import { Histogram } from "./histogram.js";
import { Live } from "./live.js";
import { DEFAULT_SINCE, needsEntryCounts, pushState, readState, searchPairs, splitQuery } from "./state.js";

const PAGE = 100;
const PRESETS = new Set(["5m", "15m", "1h", "6h", "24h", "7d"]);

export function entryRow(entry, matcher, onOpen) {
  const level = String(entry.level).toLowerCase();
  const li = h("li", { class: `entry lvl-${level}`, tabindex: "-1", dataset: { entryId: String(entry.id) } },
    h("time", { class: "ts", datetime: entry.timestamp }, formatTime(entry.timestamp)),
    h("span", { class: "lvl" }, entry.level),
    h("span", { class: "src" }, entry.source),
    h("span", { class: "msg" }, highlighted(entry.message, matcher)),
  );
  li.entry = entry;
  li.addEventListener("click", (event) => {
    if (window.getSelection && String(window.getSelection()).length) return; // selecting text
    event.preventDefault();
    onOpen(entry, li);
  });
  return li;
}

export class ExploreView {
  constructor({ session, openEntry }) {
    this.session = session;
    this.openEntry = openEntry;
    this.state = readState();
    this.generation = 0; // of the search in flight; older answers are dropped
    this.cursor = null;
    this.loading = false;
    this.selected = -1;
    this.sources = [];
    this.histogram = new Histogram($("histogram"), $("histogram-legend"), {
      onRange: (from, to) => this.setState({ from, to, since: undefined }),
    });
    this.live = new Live({
      button: $("live"), pause: $("pause"), status: $("live-status"), arrivals: $("arrivals"),
      list: $("results"),
      state: () => this.state,
      render: (entry) => entryRow(entry, this.matcher(), (e, li) => this.open(e, li)),
    });
    this.bindForm();
    new IntersectionObserver((items) => {
      if (items.some((i) => i.isIntersecting)) this.more();
    }, { rootMargin: "600px" }).observe($("sentinel"));
  }

  matcher() {
    return highlighter(this.state.q, this.state.contains);
  }

  bindForm() {
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const { q, metadata } = splitQuery($("q").value);
      // Terms typed in the box join the filters; one per key and sense (a new value wins).
      const kept = this.state.metadata.filter((m) => !metadata.some((t) => t.key === m.key && t.not === m.not));
      const next = { q: q || undefined, metadata: [...kept, ...metadata] };
      const since = $("since").value;
      if (since === "custom") {
        next.from = fromLocalInput($("from").value) || this.state.from || new Date(Date.now() - 3600e3).toISOString();
        next.to = fromLocalInput($("to").value) || undefined;
        next.since = undefined;
      } else {
        Object.assign(next, { since, from: undefined, to: undefined });
      }
      this.setState(next, { force: true });
    });
    $("since").addEventListener("change", () => {
      const custom = $("since").value === "custom";
      $("custom-range").hidden = !custom;
      if (custom) {
        if (!$("from").value) $("from").value = toLocalInput(new Date(Date.now() - 3600e3).toISOString());
        $("from").focus();
      } else {
        $("search-form").requestSubmit();
      }
    });
    const levels = $("levels");
    for (const level of LEVELS) {
      const box = h("input", { type: "checkbox", value: level, "aria-label": level });
      box.addEventListener("change", () => {
        const chosen = [...levels.querySelectorAll("input:checked")].map((i) => i.value);
        this.setState({ level: chosen.length === LEVELS.length ? [] : chosen, min_level: undefined });
      });
      levels.append(h("label", { class: `level-toggle lvl-${level.toLowerCase()}` }, box, level));
    }
    $("source-add").addEventListener("change", (event) => {
      const name = event.target.value;
      event.target.value = "";
      if (name && !this.state.source.includes(name)) this.setState({ source: [...this.state.source, name] });
    });
  }

  async loadSources() {
    try {
      const summary = await get("/api/v1/stats/summary", { hours: 24 });
      this.sources = summary.sources.map((s) => s.source).sort();
    } catch {
      this.sources = [];
    }
    const select = $("source-add");
    clear(select).append(h("option", { value: "" }, "any"), ...this.sources.map((s) => h("option", { value: s }, s)));
  }

  // Change the search; a new history entry unless `replace`.
  setState(changes, { replace = false, force = false } = {}) {
    const next = { ...this.state, ...changes, entry: undefined, entry_source: undefined, entry_at: undefined };
    for (const [k, v] of Object.entries(changes)) if (v === undefined) delete next[k];
    if (!next.since && !next.from) next.since = DEFAULT_SINCE;
    this.state = next;
    pushState(next, { replace });
    this.run(force);
  }

  // The state changed under us (back/forward, first load).
  fromUrl() {
    this.state = readState();
    this.run(false);
  }

  syncControls() {
    const s = this.state;
    const words = s.q || "";
    if (document.activeElement !== $("q")) $("q").value = words;
    const preset = s.from ? "custom" : (PRESETS.has(s.since) ? s.since : "custom");
    if (!PRESETS.has(s.since) && s.since && !s.from) {
      // A relative window the presets lack (since=2h from a link): show it as an option.
      if (![...$("since").options].some((o) => o.value === s.since)) $("since").add(h("option", { value: s.since }, `Last ${s.since}`), $("since").options.length - 1);
      $("since").value = s.since;
    } else {
      $("since").value = preset;
    }
    $("custom-range").hidden = !s.from;
    if (s.from) {
      $("from").value = toLocalInput(s.from);
      $("to").value = s.to ? toLocalInput(s.to) : "";
    }
    const floor = s.min_level ? LEVELS.indexOf(String(s.min_level).toUpperCase()) : 0;
    for (const box of $("levels").querySelectorAll("input")) {
      box.checked = s.level.length ? s.level.includes(box.value) : LEVELS.indexOf(box.value) >= floor;
    }
    const chips = clear($("chips"));
    const chip = (label, remove, cls = "") => chips.append(h("span", { class: `chip ${cls}` }, label,
      h("button", { type: "button", class: "chip-x", "aria-label": `Remove ${label}`, onclick: remove }, "×")));
    for (const src of s.source) chip(`source: ${src}`, () => this.setState({ source: s.source.filter((x) => x !== src) }));
    if (s.min_level) chip(`level ≥ ${s.min_level}`, () => this.setState({ min_level: undefined }));
    if (s.contains) chip(`contains: ${s.contains}`, () => this.setState({ contains: undefined }));
    s.metadata.forEach((m, i) => chip(`${m.not ? "NOT " : ""}metadata.${m.key}=${m.value}`,
      () => this.setState({ metadata: s.metadata.filter((_, j) => j !== i) }), m.not ? "chip-not" : ""));
    const pairs = searchPairs(s);
    $("export-csv").href = `/api/v1/logs/export?${new URLSearchParams([...pairs, ["format", "csv"]])}`;
    $("export-ndjson").href = `/api/v1/logs/export?${new URLSearchParams([...pairs, ["format", "ndjson"]])}`;
    $("alert-from-search").href = `/?${new URLSearchParams([["view", "alerts"], ["tab", "edit"], ...pairs])}`;
  }

  describeWindow() {
    const s = this.state;
    if (s.from) return `from ${formatTime(s.from)}${s.to ? ` to ${formatTime(s.to)}` : " to now"}`;
    return `in the last ${s.since}`;
  }

  showError(error) {
    const box = $("search-error");
    if (!error) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`;
  }

  async run(force) {
    const gen = ++this.generation;
    const started = performance.now();
    this.syncControls();
    this.live.restartIfOn();
    this.showError(null);
    this.cursor = null;
    this.selected = -1;
    $("end-note").hidden = true;
    $("summary").textContent = "Searching…";
    const list = $("results");
    list.setAttribute("aria-busy", "true");
    const pairs = searchPairs(this.state);
    const query = new URLSearchParams([...pairs, ["limit", String(PAGE)]]);
    // The results first: the histogram and the facets are asked for once the page has
    // arrived, so that on a busy server they do not compete with it.
    let histogram = null;
    let facets = null;
    const others = () => {
      histogram = this.loadHistogram(gen, pairs);
      facets = this.loadFacets(gen, pairs);
    };
    try {
      const page = await get(`/api/v1/logs?${query}`);
      if (gen !== this.generation) return;
      others();
      const matcher = this.matcher();
      clear(list).append(...page.items.map((e) => entryRow(e, matcher, (entry, li) => this.open(entry, li))));
      list.removeAttribute("aria-busy");
      this.cursor = page.next_cursor;
      // Time from the search (Enter) to the results painted: the frame after next.
      requestAnimationFrame(() => requestAnimationFrame(() => {
        if (gen !== this.generation) return;
        document.body.dataset.searchMs = (performance.now() - started).toFixed(1);
        document.body.dataset.searchGeneration = String(gen);
      }));
      if (!page.items.length) {
        $("summary").textContent = "";
        list.append(h("li", { class: "empty" },
          h("strong", {}, "No matches"), ` ${this.describeWindow()}. Try a longer time range, fewer words or fewer filters.`));
      } else {
        $("summary").textContent = `Newest first ${this.describeWindow()}${this.cursor ? "; scroll for more" : ""}`;
      }
      this.endNote();
    } catch (error) {
      if (gen !== this.generation) return;
      clear(list);
      list.removeAttribute("aria-busy");
      $("summary").textContent = "";
      this.showError(error);
      document.body.dataset.searchGeneration = String(gen);
      others();
    }
    await Promise.allSettled([histogram, facets]);
    if (gen === this.generation) document.body.dataset.searchDone = String(gen);
    if (force) $("q").blur();
  }

  endNote() {
    const note = $("end-note");
    const count = $("results").querySelectorAll("li[data-entry-id]").length;
    note.hidden = Boolean(this.cursor) || count === 0;
    note.textContent = `End of results: ${count.toLocaleString()} entries ${this.describeWindow()}.`;
  }

  async more() {
    if (!this.cursor || this.loading) return;
    const gen = this.generation;
    this.loading = true;
    const query = new URLSearchParams([...searchPairs(this.state), ["limit", String(PAGE)], ["cursor", this.cursor]]);
    try {
      const page = await get(`/api/v1/logs?${query}`);
      if (gen !== this.generation) return;
      const matcher = this.matcher();
      $("results").append(...page.items.map((e) => entryRow(e, matcher, (entry, li) => this.open(entry, li))));
      this.cursor = page.next_cursor;
      this.endNote();
    } catch (error) {
      if (gen === this.generation) this.showError(error);
    } finally {
      this.loading = false;
    }
    // Still short of the screen's end (a tall window): keep going.
    const sentinel = $("sentinel").getBoundingClientRect();
    if (this.cursor && sentinel.top < innerHeight + 600) this.more();
  }

  async loadHistogram(gen, pairs) {
    const note = $("histogram-note");
    note.hidden = true;
    try {
      let hist;
      if (needsEntryCounts(this.state)) {
        hist = await get(`/api/v1/logs/histogram?${new URLSearchParams(pairs)}`);
      } else {
        hist = await get(`/api/v1/stats/histogram?${new URLSearchParams(pairs)}`);
      }
      if (gen !== this.generation) return;
      this.histogram.render(hist);
    } catch (error) {
      if (gen !== this.generation) return;
      this.histogram.clear();
      note.hidden = false;
      note.textContent = `No histogram: ${error.message}`;
    }
  }

  async loadFacets(gen, pairs) {
    const box = $("facets");
    try {
      const facets = await get(`/api/v1/logs/facets?${new URLSearchParams(pairs)}`);
      if (gen !== this.generation) return;
      renderFacets(box, facets, this.state, (changes) => this.setState(changes));
    } catch (error) {
      if (gen !== this.generation) return;
      clear(box).append(h("p", { class: "note" }, `No facets: ${error.message}`));
    }
  }

  entries() {
    return [...$("results").querySelectorAll("li[data-entry-id]")];
  }

  select(delta) {
    const rows = this.entries();
    if (!rows.length) return;
    this.selected = Math.max(0, Math.min(rows.length - 1, this.selected + delta));
    for (const row of rows) row.classList.remove("selected");
    const row = rows[this.selected];
    row.classList.add("selected");
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
    if (this.selected >= rows.length - 5) this.more();
  }

  openSelected() {
    const row = this.entries()[this.selected];
    if (row) this.open(row.entry, row);
  }

  open(entry, row) {
    for (const r of this.entries()) r.classList.remove("selected");
    if (row) {
      row.classList.add("selected");
      this.selected = this.entries().indexOf(row);
    }
    this.openEntry(entry);
  }
}
