// The histogram of matches over the window, stacked by level (uPlot, canvas). Drag across
// it to zoom the window to the selection; click a bar to narrow the window to that bar.

import uPlot from "./vendor/uplot-1.6.32.esm.js";
import { clear, formatTime, h } from "./dom.js";

// Bottom to top: the severe levels sit on the axis where they are easy to see.
const STACK = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG"];

function levelColour(level) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--level-${level.toLowerCase()}`).trim() || "#888";
}

export class Histogram {
  constructor(box, legend, { onRange }) {
    this.box = box;
    this.legend = legend;
    this.onRange = onRange; // (fromIso, toIso) => void
    this.plot = null;
    this.data = null;
    new ResizeObserver(() => {
      if (this.plot) this.plot.setSize(this.size());
    }).observe(box);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.redraw());
  }

  size() {
    return { width: Math.max(200, this.box.clientWidth), height: 140 };
  }

  redraw() {
    if (this.data) this.render(this.data);
  }

  clear() {
    this.data = null;
    if (this.plot) this.plot.destroy();
    this.plot = null;
    clear(this.legend);
  }

  render(hist) {
    this.data = hist;
    if (this.plot) this.plot.destroy();
    const xs = hist.buckets.map((b) => Date.parse(b.start) / 1000);
    const levels = STACK.filter((l) => hist.levels.includes(l));
    // Cumulative series, drawn top first so each lower level paints over the one above.
    const cumulative = [];
    let running = hist.buckets.map(() => 0);
    for (const level of levels) {
      running = running.map((v, i) => v + (hist.buckets[i].counts[level] || 0));
      cumulative.push(running);
    }
    const order = levels.map((_, i) => i).reverse();
    const interval = hist.interval_s;
    const axisColour = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim();
    const gridColour = getComputedStyle(document.documentElement).getPropertyValue("--grid").trim();
    const bars = uPlot.paths.bars({ size: [0.9, 40], align: 1 });
    const opts = {
      ...this.size(),
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      select: { show: true },
      scales: { x: { time: true, range: () => [xs[0], xs[xs.length - 1] + interval] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [
        { stroke: axisColour, grid: { stroke: gridColour, width: 1 }, ticks: { show: false } },
        { stroke: axisColour, grid: { stroke: gridColour, width: 1 }, ticks: { show: false }, size: 50 },
      ],
      series: [
        {},
        ...order.map((i) => ({
          label: levels[i],
          fill: levelColour(levels[i]),
          stroke: levelColour(levels[i]),
          width: 0,
          paths: bars,
          points: { show: false },
        })),
      ],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const start = u.posToVal(u.select.left, "x");
          const end = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0 }, false);
          this.onRange(new Date(start * 1000).toISOString(), new Date(end * 1000).toISOString());
        }],
        setCursor: [(u) => this.showLegend(u.cursor.idx)],
      },
    };
    const data = [xs, ...order.map((i) => cumulative[i])];
    this.plot = new uPlot(opts, data, this.box);
    this.plot.over.addEventListener("click", () => {
      const idx = this.plot.cursor.idx;
      if (idx === null || idx === undefined) return;
      if (!hist.buckets[idx].total) return;
      const start = xs[idx];
      this.onRange(new Date(start * 1000).toISOString(), new Date((start + interval) * 1000).toISOString());
    });
    this.plot.over.title = "Drag to zoom; click a bar to narrow to it";
    this.showLegend(null);
  }

  showLegend(idx) {
    const hist = this.data;
    if (!hist) return;
    clear(this.legend);
    const bucket = idx === null || idx === undefined ? null : hist.buckets[idx];
    const counts = bucket ? bucket.counts : Object.fromEntries(hist.levels.map((l) => [l, hist.buckets.reduce((s, b) => s + (b.counts[l] || 0), 0)]));
    this.legend.append(h("span", { class: "legend-when" }, bucket ? formatTime(bucket.start).slice(0, 16) : `${hist.total.toLocaleString()} in window`));
    for (const level of [...STACK].reverse()) {
      if (!hist.levels.includes(level)) continue;
      this.legend.append(h("span", { class: `legend-item lvl-${level.toLowerCase()}` }, h("i", { class: "swatch" }), `${level} ${(counts[level] || 0).toLocaleString()}`));
    }
  }
}
