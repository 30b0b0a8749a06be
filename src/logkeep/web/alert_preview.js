// A rule's preview (POST /api/v1/alert-rules/preview): when it would have been pending
// and firing over the last 24 hours or 7 days, drawn as bands over a uPlot chart of the
// query's matches in the same range, and the notifications it would have sent, listed.

import uPlot from "./vendor/uplot-1.6.32.esm.js";
import { get, post } from "./api.js";
import { clear, h } from "./dom.js";
import { formatValue, groupLabel, shortTime, stateBadge } from "./alert_common.js";
import { needsEntryCounts, searchPairs } from "./state.js";

const BANDS = { firing: "--level-error", pending: "--level-warn", no_data: "--muted" };
const SHOWN = 12; // notifications listed before "show all"

function colour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// Per group, the spans of time in each state, from the transitions in order.
export function episodes(answer) {
  const start = Date.parse(answer.from) / 1000;
  const end = Date.parse(answer.to) / 1000;
  const open = new Map(); // group -> {state, since}
  const spans = [];
  for (const t of answer.transitions) {
    const at = Date.parse(t.at) / 1000;
    const current = open.get(t.group) || { state: t.from || "ok", since: start };
    if (current.state !== "ok" && current.state !== "resolved") spans.push({ group: t.group, state: current.state, start: current.since, end: at });
    open.set(t.group, { state: t.to, since: at });
  }
  for (const [group, current] of open) {
    if (current.state !== "ok" && current.state !== "resolved") spans.push({ group, state: current.state, start: current.since, end });
  }
  return spans;
}

// The spans of every group merged by state (firing over pending over no data): what the
// chart shades, so that many groups read as one band; the list below names the groups.
export function mergedSpans(spans) {
  const out = [];
  for (const state of ["no_data", "pending", "firing"]) {
    const mine = spans.filter((s) => s.state === state).sort((a, b) => a.start - b.start);
    let open = null;
    for (const s of mine) {
      if (open && s.start <= open.end) open.end = Math.max(open.end, s.end);
      else {
        if (open) out.push(open);
        open = { state, start: s.start, end: s.end };
      }
    }
    if (open) out.push(open);
  }
  return out;
}

// The search state of a rule body, to count its matches with the search's histogram.
function searchStateOf(body, sources, range) {
  const names = body.sources.map((id) => (sources.find((s) => s.id === id) || {}).name).filter(Boolean);
  return {
    q: body.query || undefined, contains: body.contains || undefined, since: range,
    level: body.level || [], min_level: body.min_level && body.min_level !== "DEBUG" ? body.min_level : undefined,
    metadata: [...Object.entries(body.metadata || {}).map(([key, value]) => ({ key, value, not: false })),
      ...Object.entries(body.not_metadata || {}).map(([key, value]) => ({ key, value, not: true }))],
    source: names,
  };
}

export class PreviewPane {
  constructor(box, { sources }) {
    this.box = box;
    this.sources = sources;
    this.plot = null;
    this.last = null;
    this.generation = 0;
  }

  empty() {
    this.destroy();
    clear(this.box).append(h("p", { class: "muted" },
      "Preview runs the rule over the last 24 hours or 7 days of stored entries, tick by tick as live evaluation would, and shows when it would have fired. Nothing is saved or sent."));
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    if (this.resize) this.resize.disconnect();
    this.resize = null;
  }

  async run(body, range, onFieldError) {
    const gen = ++this.generation;
    this.destroy();
    clear(this.box).append(h("p", { class: "muted", role: "status" }, "Previewing…"));
    delete this.box.dataset.fired;
    const state = searchStateOf(body, this.sources, range);
    const path = needsEntryCounts(state) ? "/api/v1/logs/histogram" : "/api/v1/stats/histogram";
    const counts = get(`${path}?${new URLSearchParams(searchPairs(state))}`).catch((error) => ({ error }));
    let answer;
    try {
      answer = await post(`/api/v1/alert-rules/preview?range=${encodeURIComponent(range)}`, body);
    } catch (error) {
      if (gen !== this.generation) return;
      clear(this.box).append(h("p", { class: "muted" }, "No preview: see the reason beside the form."));
      onFieldError(error);
      return;
    }
    const hist = await counts;
    if (gen !== this.generation) return;
    this.last = { answer, hist, body, range };
    this.render();
  }

  redraw() {
    if (this.last) this.render();
  }

  render() {
    const { answer, hist, body, range } = this.last;
    this.destroy();
    const box = clear(this.box);
    box.dataset.fired = String(answer.fired);
    const span = range === "7d" ? "7 days" : "24 hours";
    const evaluations = `${answer.evaluations.toLocaleString()} evaluations`;
    box.append(h("p", { class: `preview-headline ${answer.fired ? "would-fire" : "quiet"}` },
      answer.fired
        ? `Would have fired ${answer.fired} time${answer.fired === 1 ? "" : "s"} in the last ${span}`
        : `Would not have fired in the last ${span}`,
      h("span", { class: "muted" }, ` (${evaluations}, ${shortTime(answer.from)} to ${shortTime(answer.to)})`)));
    const chart = h("div", { class: "preview-chart", role: "img", "aria-label": "Matches over the range, with the spans the rule would have been pending or firing" });
    const legend = h("div", { class: "histogram-legend" },
      h("span", { class: "legend-item" }, h("i", { class: "swatch band-firing" }), "firing"),
      h("span", { class: "legend-item" }, h("i", { class: "swatch band-pending" }), "pending"),
      h("span", { class: "legend-item" }, h("i", { class: "swatch band-no_data" }), "no data"),
      h("span", { class: "legend-item" }, h("i", { class: "swatch band-matches" }), hist.error ? "matches: not counted" : `matches per ${Math.round(hist.interval_s / 60)} min`));
    box.append(chart, legend);
    if (hist.error) box.append(h("p", { class: "note" }, `The matches could not be counted: ${hist.error.message}`));
    this.draw(chart, answer, hist.error ? null : hist);
    box.append(this.list(answer, body));
  }

  draw(chart, answer, hist) {
    const from = Date.parse(answer.from) / 1000;
    const to = Date.parse(answer.to) / 1000;
    const xs = hist ? hist.buckets.map((b) => Date.parse(b.start) / 1000) : [from, to];
    const ys = hist ? hist.buckets.map((b) => b.total) : [0, 0];
    const spans = mergedSpans(episodes(answer));
    const fired = answer.notifications.filter((n) => n.status === "firing").map((n) => Date.parse(n.at) / 1000);
    const bandColours = Object.fromEntries(Object.entries(BANDS).map(([k, v]) => [k, colour(v)]));
    // Translucent colours read fainter on a dark background: a little more there.
    const dark = getComputedStyle(document.documentElement).colorScheme === "dark";
    const alpha = { firing: dark ? 0.42 : 0.28, other: dark ? 0.32 : 0.22, bars: dark ? 0.75 : 0.5 };
    const axis = colour("--muted");
    const grid = colour("--grid");
    const width = () => Math.max(260, chart.clientWidth || 400);
    const opts = {
      width: width(), height: 150,
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: { x: { time: true, range: () => [from, to] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { show: false } },
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { show: false }, size: 46 },
      ],
      series: [{}, { label: "matches", fill: colour("--accent"), stroke: colour("--accent"), width: 0, alpha: alpha.bars,
        paths: uPlot.paths.bars({ size: [0.9, 30], align: 1 }), points: { show: false } }],
      hooks: {
        drawClear: [(u) => {
          const { ctx } = u;
          const { top, height } = u.bbox;
          ctx.save();
          for (const s of spans) {
            const x0 = u.valToPos(Math.max(s.start, from), "x", true);
            const x1 = u.valToPos(Math.min(s.end, to), "x", true);
            ctx.globalAlpha = s.state === "firing" ? alpha.firing : alpha.other;
            ctx.fillStyle = bandColours[s.state] || axis;
            ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
          }
          ctx.restore();
        }],
        draw: [(u) => {
          const { ctx } = u;
          const { top, height } = u.bbox;
          ctx.save();
          ctx.strokeStyle = bandColours.firing;
          ctx.lineWidth = Math.max(1, devicePixelRatio);
          for (const at of fired) {
            const x = Math.round(u.valToPos(at, "x", true)) + 0.5;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
    this.plot = new uPlot(opts, [xs, ys], chart);
    this.resize = new ResizeObserver(() => { if (this.plot) this.plot.setSize({ width: width(), height: 150 }); });
    this.resize.observe(chart);
  }

  list(answer, body) {
    const section = h("div", { class: "preview-list" });
    if (!answer.notifications.length) {
      section.append(h("p", { class: "muted" }, "No notification would have been sent."));
    } else {
      const row = (n) => h("tr", { class: `would-notify notify-${n.status}` },
        h("td", {}, shortTime(n.at).slice(0, 16)), h("td", {}, stateBadge(n.status === "repeat" ? "firing" : n.status), n.status === "repeat" ? " again" : ""),
        h("td", {}, groupLabel(body, n.group)), h("td", { class: "num" }, formatValue(n.value, body.kind)));
      const tbody = h("tbody", {}, answer.notifications.slice(0, SHOWN).map(row));
      section.append(h("h3", { class: "preview-title" }, `Would have notified (${answer.notifications.length}${answer.notifications.length >= 500 ? "+" : ""})`),
        h("table", { class: "grid compact" }, h("thead", {}, h("tr", {}, ["at", "", "group", "value"].map((x) => h("th", {}, x)))), tbody));
      if (answer.notifications.length > SHOWN) {
        const all = h("button", { type: "button", class: "small" }, `Show all ${answer.notifications.length}`);
        all.addEventListener("click", () => {
          tbody.append(...answer.notifications.slice(SHOWN).map(row));
          all.remove();
        });
        section.append(all);
      }
    }
    const states = Object.entries(answer.states).filter(([, s]) => s.state !== "ok");
    if (states.length) {
      section.append(h("h3", { class: "preview-title" }, "At the end of the range"),
        h("ul", { class: "plain end-states" }, states.slice(0, 20).map(([group, s]) =>
          h("li", {}, stateBadge(s.state), ` ${groupLabel(body, group)} since ${shortTime(s.since)}`))));
    }
    return section;
  }
}
