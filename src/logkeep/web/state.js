// The page's whole state lives in its URL, with the search API's own parameter names
// (q, since, from, to, source, level, min_level, contains, metadata.<key>,
// not.metadata.<key>), plus the explorer's: the open entry and the view.
// A search is shared by copying the address, survives a reload, and Back walks through
// earlier searches (each new search is a history entry; opening an entry replaces it).

export const SEARCH_SINGLE = ["q", "since", "from", "to", "min_level", "contains"];
export const SEARCH_REPEAT = ["source", "level"];
const META = "metadata.";
const NOT_META = "not.metadata.";
export const DEFAULT_SINCE = "24h";

export function readState(search = location.search) {
  const p = new URLSearchParams(search);
  const state = { source: [], level: [], metadata: [], view: p.get("view") || "explore" };
  for (const key of SEARCH_SINGLE) if (p.has(key)) state[key] = p.get(key);
  for (const key of SEARCH_REPEAT) state[key] = p.getAll(key);
  for (const [key, value] of p) {
    if (key.startsWith(META)) state.metadata.push({ key: key.slice(META.length), value, not: false });
    else if (key.startsWith(NOT_META)) state.metadata.push({ key: key.slice(NOT_META.length), value, not: true });
  }
  if (!state.since && !state.from) state.since = DEFAULT_SINCE;
  state.entry = p.get("entry");
  state.entry_source = p.get("entry_source");
  state.entry_at = p.get("entry_at");
  state.tab = p.get("tab");
  return state;
}

// [name, value] pairs the search API takes, in a stable order.
export function searchPairs(state) {
  const pairs = [];
  for (const key of ["q", "contains"]) if (state[key]) pairs.push([key, state[key]]);
  if (state.from) {
    pairs.push(["from", state.from]);
    if (state.to) pairs.push(["to", state.to]);
  } else if (state.since) {
    pairs.push(["since", state.since]);
  }
  for (const s of state.source || []) pairs.push(["source", s]);
  for (const l of state.level || []) pairs.push(["level", l]);
  if (state.min_level) pairs.push(["min_level", state.min_level]);
  for (const m of state.metadata || []) pairs.push([(m.not ? NOT_META : META) + m.key, m.value]);
  return pairs;
}

export function searchParams(state) {
  const out = new URLSearchParams();
  for (const [k, v] of searchPairs(state)) out.append(k, v);
  return out;
}

export function stateUrl(state) {
  const p = searchParams(state);
  if (state.view && state.view !== "explore") {
    p.set("view", state.view);
    if (state.tab) p.set("tab", state.tab);
  }
  if (state.entry) {
    p.set("entry", state.entry);
    p.set("entry_source", state.entry_source);
    p.set("entry_at", state.entry_at);
  }
  // since=24h is the default: keep it anyway so a shared link means the same window.
  const text = p.toString();
  return text ? `/?${text}` : "/";
}

export function pushState(state, { replace = false } = {}) {
  const url = stateUrl(state);
  if (url === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

// Whether the histogram must count entries (words, substrings, metadata) rather than
// read the per-minute rollups.
export function needsEntryCounts(state) {
  return Boolean(state.q || state.contains || (state.metadata && state.metadata.length));
}

// "payment metadata.status=503 not.metadata.host=a" -> words and metadata terms.
export function splitQuery(text) {
  const words = [];
  const metadata = [];
  for (const token of (text || "").split(/\s+/)) {
    if (!token) continue;
    const m = /^(-|not\.)?metadata\.([A-Za-z0-9_.-]+)=(.*)$/.exec(token);
    if (m && m[3] !== "") metadata.push({ key: m[2], value: m[3], not: Boolean(m[1]) });
    else words.push(token);
  }
  return { q: words.join(" "), metadata };
}
