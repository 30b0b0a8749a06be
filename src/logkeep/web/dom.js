// DOM helpers. Everything from a log entry goes in as text (textContent / text nodes):
// nothing here, nor anywhere in the explorer, assigns innerHTML.

export const $ = (id) => document.getElementById(id);

// h("a", {href: "...", class: "x", onclick: fn, dataset: {id: 1}}, "text", childNode, ...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// A matcher for the words of `q` (whole words, as the full-text search matches them)
// and the `contains` substring; null when there is nothing to highlight.
export function highlighter(q, contains) {
  const parts = [];
  for (const word of (q || "").split(/[^\p{L}\p{N}]+/u)) {
    if (word) parts.push(`(?<![\\p{L}\\p{N}])${escapeRegExp(word)}(?![\\p{L}\\p{N}])`);
  }
  if (contains) parts.push(escapeRegExp(contains));
  if (!parts.length) return null;
  return new RegExp(parts.join("|"), "giu");
}

// `text` as text nodes, with matches of `matcher` wrapped in <mark>.
export function highlighted(text, matcher) {
  const fragment = document.createDocumentFragment();
  if (!matcher) {
    fragment.append(document.createTextNode(text));
    return fragment;
  }
  let last = 0;
  matcher.lastIndex = 0;
  for (const match of text.matchAll(matcher)) {
    if (!match[0]) continue;
    if (match.index > last) fragment.append(document.createTextNode(text.slice(last, match.index)));
    fragment.append(h("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) fragment.append(document.createTextNode(text.slice(last)));
  return fragment;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// Local time with milliseconds: 2025-01-31 14:02:03.123
export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// For <input type="datetime-local"> and back.
export function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export async function copyText(text, button) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      // Plain http on an intranet host: no Clipboard API there; a selected textarea is.
      const area = h("textarea", { class: "offscreen", readonly: true });
      area.value = text;
      document.body.append(area);
      area.select();
      const done = document.execCommand("copy");
      area.remove();
      if (!done) throw new Error("copy refused");
    }
    flash(button, "Copied");
  } catch {
    flash(button, "Copy failed");
  }
}

export function flash(button, label) {
  if (!button) return;
  const before = button.textContent;
  button.textContent = label;
  setTimeout(() => { button.textContent = before; }, 1200);
}

export function isTyping(event) {
  const t = event.target;
  if (!(t instanceof Element)) return false;
  return t.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']") !== null;
}

export const LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
