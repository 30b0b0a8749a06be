// What the alerting views share: the caller's sources by id and name, durations as
// people write them ("5m"), state badges, a group's readable label, the search a rule
// (or one of its groups) matches as an explorer address, and API field errors shown next
// to the field they name.

import { ApiError, get } from "./api.js";
import { LEVELS, formatTime, h } from "./dom.js";
import { stateUrl } from "./state.js";

export const KINDS = [
  ["threshold", "Threshold", "the count of matches in the window compares with a number"],
  ["ratio", "Ratio", "matches over a second query's matches (an error rate)"],
  ["absence", "Absence", "fewer matches than expected, overall or for each group (a host gone quiet)"],
  ["new_pattern", "New pattern", "an entry whose message shape was not seen while learning"],
];
export const KIND_NAMES = Object.fromEntries(KINDS.map(([k, name]) => [k, name]));
export const STATES = ["firing", "pending", "no_data", "resolved", "ok"];
const STATE_WORDS = { ok: "ok", pending: "pending", firing: "firing", resolved: "resolved", no_data: "no data", error: "error" };

// The sources the caller may read, [{id, name}] in name order (the summary lists exactly
// those, with ids; GET /api/v1/sources is for admins).
let sourcesPromise = null;
export function readableSources({ fresh = false } = {}) {
  if (!sourcesPromise || fresh) {
    sourcesPromise = get("/api/v1/stats/summary", { hours: 1 })
      .then((s) => s.sources.map((x) => ({ id: x.source_id, name: x.source })).sort((a, b) => a.name.localeCompare(b.name)))
      .catch((error) => { sourcesPromise = null; throw error; });
  }
  return sourcesPromise;
}

export function sourceName(sources, id) {
  const found = sources.find((s) => s.id === id);
  return found ? found.name : `source ${id}`;
}

const UNITS = { s: 1, m: 60, h: 3600, d: 86400 };

// "90s", "5m", "1h30m", "2d", or a bare number of seconds; null when unreadable.
export function parseDuration(text) {
  const t = String(text ?? "").trim().toLowerCase().replace(/\s+/g, "");
  if (!t) return null;
  if (/^\d+$/.test(t)) return Number(t);
  if (!/^(\d+[smhd])+$/.test(t)) return null;
  let total = 0;
  for (const [, n, unit] of t.matchAll(/(\d+)([smhd])/g)) total += Number(n) * UNITS[unit];
  return total;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  let rest = Math.round(Number(seconds));
  if (rest === 0) return "0s";
  let out = "";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}

export function shortTime(iso) {
  return iso ? formatTime(iso).slice(0, 19) : "—";
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, STATE_WORDS[state] || state);
}

// A metadata group key (the exact JSON of the value) as the search parameter's value:
// plain text where the search reads it back as that text, else the JSON text
// (domain/alert_rules.py metadata_param_value).
export function metadataParamValue(key) {
  if (!key.startsWith('"')) return key;
  let value;
  try {
    value = JSON.parse(key);
  } catch {
    return key;
  }
  if (typeof value !== "string") return key;
  const looksTyped = ["true", "false", "null"].includes(value) || /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/.test(value);
  const quoted = value.length >= 2 && value[0] === '"' && value[value.length - 1] === '"';
  return looksTyped || quoted ? key : value;
}

// How a group reads: "every match" for an ungrouped rule, "source app_errors",
// "host = web2", or a new pattern's shape.
export function groupLabel(rule, key, labels = {}) {
  if (!key) return "every match";
  if (key.startsWith("shape:")) return labels.shape ? `shape ${labels.shape}` : key;
  if (rule && rule.group_by === "source") return `source ${key}`;
  if (rule && rule.group_by) return `${rule.group_by.slice("metadata.".length)} = ${metadataParamValue(key)}`;
  return key;
}

// The search state (state.js) of a rule's query; `group` narrows it to one group.
export function ruleSearchState(rule, sources, { group = "", from, to } = {}) {
  const state = { source: [], level: [...(rule.level || [])], metadata: [] };
  if (rule.query) state.q = rule.query;
  if (rule.contains) state.contains = rule.contains;
  if (rule.min_level) state.min_level = rule.min_level;
  for (const [key, value] of Object.entries(rule.metadata || {})) state.metadata.push({ key, value, not: false });
  for (const [key, value] of Object.entries(rule.not_metadata || {})) state.metadata.push({ key, value, not: true });
  const bySource = rule.group_by === "source";
  if (!bySource || !group) state.source = (rule.sources || []).map((id) => sourceName(sources, id));
  if (group && !group.startsWith("shape:")) {
    if (bySource) state.source = [group];
    else if (rule.group_by) {
      const key = rule.group_by.slice("metadata.".length);
      state.metadata = [...state.metadata.filter((m) => m.not || m.key !== key), { key, value: metadataParamValue(group), not: false }];
    }
  }
  if (from) {
    state.from = from;
    if (to) state.to = to;
  } else {
    state.since = "24h";
  }
  return state;
}

export function searchLink(rule, sources, options) {
  return stateUrl(ruleSearchState(rule, sources, options));
}

// "≥ ERROR", "ERROR, FATAL" or "every level".
export function levelText(rule) {
  if (rule.level && rule.level.length) return rule.level.join(", ");
  if (!rule.min_level || rule.min_level === "DEBUG") return "every level";
  return `≥ ${rule.min_level}`;
}

export function queryText(rule) {
  const parts = [];
  if (rule.query) parts.push(rule.query);
  for (const [k, v] of Object.entries(rule.metadata || {})) parts.push(`metadata.${k}=${v}`);
  for (const [k, v] of Object.entries(rule.not_metadata || {})) parts.push(`not.metadata.${k}=${v}`);
  if (rule.contains) parts.push(`contains "${rule.contains}"`);
  return parts.join(" ");
}

export function formatValue(value, kind) {
  if (value === null || value === undefined) return "—";
  if (kind === "ratio") return `${(value * 100).toFixed(value < 0.1 ? 2 : 1)} %`;
  return Number.isInteger(value) ? value.toLocaleString() : String(Math.round(value * 1000) / 1000);
}

const OPS = { ">": ">", ">=": "≥", "<": "<", "<=": "≤" };

// What a rule fires on, in words: "≥ 10 in 5m", "< 1 in 5m", "≥ 20.0 % (at least 50)".
export function conditionText(rule) {
  const window = formatDuration(rule.window_seconds);
  if (rule.kind === "new_pattern") return `a shape unseen for ${formatDuration(rule.learning_seconds)}, within ${window}`;
  if (rule.kind === "absence") return `< ${formatValue(rule.threshold)} in ${window}`;
  if (rule.kind === "ratio") return `${OPS[rule.op]} ${formatValue(rule.threshold, "ratio")} in ${window} (at least ${rule.min_volume})`;
  return `${OPS[rule.op]} ${formatValue(rule.threshold)} in ${window}`;
}

// An alert's value and what its rule fires at: "12 (fires at ≥ 10)".
export function valueAgainst(alert) {
  if (alert.kind === "new_pattern") return h("span", {}, alert.value === null ? "—" : `${formatValue(alert.value)} new`);
  const op = alert.kind === "absence" ? "<" : alert.op;
  return h("span", {}, formatValue(alert.value, alert.kind),
    h("span", { class: "muted" }, ` (fires at ${OPS[op] || op} ${formatValue(alert.threshold, alert.kind)})`));
}

export function errorBox() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

export function showError(box, error) {
  box.hidden = !error;
  box.textContent = error ? (error instanceof ApiError ? error.message : String(error.message || error)) : "";
}

// A labelled field with a place for its error: h("div.field[data-field=name]").
export function field(name, label, control, hint) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const single = ["INPUT", "SELECT", "TEXTAREA"].includes(control.tagName);
  if (single) control.id = id;
  for (const c of single ? [control] : control.querySelectorAll("input, select, textarea")) {
    c.setAttribute("aria-describedby", `${id}-error`);
  }
  return h("div", { class: "field", dataset: { field: name } },
    single ? h("label", { for: id }, label) : h("span", { class: "label" }, label), control, hint ? h("p", { class: "hint" }, hint) : null, error);
}

// Shows each error the API named next to its field (by the first part of its location,
// through `aliases`), the rest in `general`; false when nothing named a field.
export function showFieldErrors(form, general, error, aliases = {}) {
  clearFieldErrors(form);
  const fields = error instanceof ApiError ? error.fields : [];
  const rest = [];
  for (const f of fields) {
    const first = f.where.split(".")[0];
    const name = aliases[f.where] || aliases[first] || first;
    const box = [...form.querySelectorAll(`.field[data-field="${CSS.escape(name)}"]`)].find((b) => !b.closest("[hidden]"));
    if (!box) {
      rest.push(f.where ? `${f.where}: ${f.message}` : f.message);
      continue;
    }
    const p = box.querySelector(".field-error");
    const text = f.where && f.where !== name ? `${f.where}: ${f.message}` : f.message;
    p.textContent = p.hidden ? text : `${p.textContent}; ${text}`;
    p.hidden = false;
    box.classList.add("invalid");
    for (const c of box.querySelectorAll("input, select, textarea")) c.setAttribute("aria-invalid", "true");
  }
  if (!fields.length || rest.length) showError(general, rest.length ? new Error(rest.join("; ")) : error);
  else showError(general, null);
  const first = form.querySelector(".field.invalid input, .field.invalid select, .field.invalid textarea");
  if (first) first.focus({ preventScroll: false });
}

export function clearFieldErrors(form) {
  for (const box of form.querySelectorAll(".field.invalid")) {
    box.classList.remove("invalid");
    for (const c of box.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  }
  for (const p of form.querySelectorAll(".field-error")) {
    p.hidden = true;
    p.textContent = "";
  }
}

// Levels chosen with toggles as the API takes them: every level is min_level DEBUG (the
// API's default would be ERROR), "WARN and up" is min_level WARN, any other set a list.
export function levelsToQuery(chosen) {
  const picked = LEVELS.filter((l) => chosen.includes(l));
  if (!picked.length) return null;
  const floor = LEVELS.indexOf(picked[0]);
  if (picked.length === LEVELS.length - floor) return { level: [], min_level: picked[0] };
  return { level: picked, min_level: null };
}

export function levelsFromQuery(query) {
  if (query.level && query.level.length) return [...query.level];
  const floor = LEVELS.indexOf(query.min_level || "ERROR");
  return LEVELS.filter((_, i) => i >= Math.max(0, floor));
}

// "a=1\nb=2" <-> {a: "1", b: "2"}; lines without "=" are reported.
export function parsePairs(text) {
  const pairs = {};
  const bad = [];
  for (const line of String(text || "").split("\n")) {
    const t = line.trim();
    if (!t) continue;
    const at = t.indexOf("=");
    if (at <= 0) bad.push(t);
    else pairs[t.slice(0, at).trim()] = t.slice(at + 1).trim();
  }
  return { pairs, bad };
}

export function pairsText(pairs) {
  return Object.entries(pairs || {}).map(([k, v]) => `${k}=${v}`).join("\n");
}

// A two-step button: the first click arms it, the second does it (no confirm dialog).
export function armedButton(label, armedLabel, attrs, action) {
  const button = h("button", { type: "button", class: "small danger", ...attrs }, label);
  let armed = false;
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = armedLabel;
      setTimeout(() => { armed = false; button.textContent = label; }, 4000);
      return;
    }
    await action(button);
  });
  return button;
}

export function table(headers, rows, attrs = {}) {
  return h("table", { class: "grid", ...attrs }, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}
