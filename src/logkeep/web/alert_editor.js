// The alert rule editor: every kind the API takes (threshold with group-by, ratio with a
// minimum volume, absence over declared or recently seen groups, new message pattern),
// its query built from the same filters as the search page (words and metadata terms in
// one box, level toggles, sources), timing, channels and labels; a preview over the last
// 24 hours or 7 days before saving; the API's reasons shown next to the field they name.

import { ApiError, patch, post } from "./api.js";
import { LEVELS, clear, h } from "./dom.js";
import {
  KINDS, clearFieldErrors, errorBox, field, formatDuration, levelsFromQuery, levelsToQuery,
  pairsText, parseDuration, parsePairs, showFieldErrors,
} from "./alert_common.js";
import { PreviewPane } from "./alert_preview.js";
import { splitQuery, stateUrl } from "./state.js";

const DEFAULTS = {
  kind: "threshold", op: ">=", threshold: 10, window_seconds: 300, interval_seconds: 60,
  for_seconds: 0, keep_firing_for_seconds: 0, repeat_interval_seconds: 14400, min_volume: 20,
  learning_seconds: 86400, level: [], min_level: "ERROR", query: "", contains: null,
  metadata: {}, not_metadata: {}, sources: [], channels: [], labels: {}, group_by: null,
  expected_groups: [], seen_lookback_seconds: null, denominator: null, name: "", description: "",
};
// Where the API's error locations land in the form (api.js drops the leading "body" or
// "query" that says where a field was sent, so ["body", "query"], the rule's words,
// arrives as "query").
const ALIASES = {
  source: "sources", metadata: "query", not_metadata: "query", min_level: "level", op: "threshold",
  range: "preview", is_active: "name", denominator: "denominator",
};
const TIMING = [
  ["window_seconds", "Window", "matches counted over this long, e.g. 5m"],
  ["interval_seconds", "Every", "evaluated this often (5s at least)"],
  ["for_seconds", "For", "the condition holds this long before firing"],
  ["keep_firing_for_seconds", "Keep firing for", "clear this long before resolving"],
  ["repeat_interval_seconds", "Repeat every", "a firing group is notified again this often"],
];

// The rule fields of a search (state.js): its words, metadata terms, levels and sources.
export function ruleFromSearch(state, sources) {
  const rule = { ...DEFAULTS, metadata: {}, not_metadata: {} };
  rule.query = state.q || "";
  rule.contains = state.contains || null;
  for (const m of state.metadata || []) (m.not ? rule.not_metadata : rule.metadata)[m.key] = m.value;
  if (state.level && state.level.length) Object.assign(rule, { level: [...state.level], min_level: null });
  else Object.assign(rule, { level: [], min_level: state.min_level || "DEBUG" });
  const unknown = [];
  rule.sources = [];
  for (const name of state.source || []) {
    const found = sources.find((s) => s.name === name);
    if (found) rule.sources.push(found.id);
    else unknown.push(name);
  }
  return { rule, unknown };
}

function queryBoxText(rule) {
  const parts = rule.query ? [rule.query] : [];
  for (const [k, v] of Object.entries(rule.metadata || {})) parts.push(`metadata.${k}=${v}`);
  for (const [k, v] of Object.entries(rule.not_metadata || {})) parts.push(`not.metadata.${k}=${v}`);
  return parts.join(" ");
}

function queryFromBox(text) {
  const { q, metadata } = splitQuery(text);
  const out = { query: q, metadata: {}, not_metadata: {} };
  for (const m of metadata) (m.not ? out.not_metadata : out.metadata)[m.key] = m.value;
  return out;
}

export class RuleEditor {
  // rule: a rule as the API shows it (editing), or fields to start from (new).
  constructor(root, { rule, sources, channels, session, onSaved, editing }) {
    this.root = root;
    this.rule = { ...DEFAULTS, ...rule };
    this.sources = sources;
    this.channels = channels;
    this.session = session;
    this.onSaved = onSaved;
    this.editing = editing; // the rule's id when editing
    this.everySource = session.sources === null; // may make rules on every source
  }

  render() {
    const r = this.rule;
    const root = clear(this.root);
    const c = (this.controls = {});
    c.name = h("input", { name: "name", maxlength: "100", required: true, value: r.name, autocomplete: "off" });
    c.description = h("input", { name: "description", maxlength: "1000", value: r.description });
    c.kinds = KINDS.map(([value, label, hint]) => h("label", { class: "kind-choice" },
      h("input", { type: "radio", name: "kind", value, checked: r.kind === value }),
      h("span", {}, h("strong", {}, label), h("span", { class: "hint" }, hint))));

    // Matches: the search page's filters.
    c.every = h("input", { type: "checkbox", name: "every_source", checked: this.everySource && !r.sources.length });
    c.sources = this.sources.map((s) => h("input", { type: "checkbox", name: "source", value: String(s.id), checked: r.sources.includes(s.id) }));
    const sourceBox = h("div", { class: "source-list", role: "group", "aria-label": "Sources" },
      this.everySource ? h("label", { class: "check" }, c.every, " every source") : null,
      this.sources.map((s, i) => h("label", { class: "check" }, c.sources[i], ` ${s.name}`)),
      this.sources.length ? null : h("p", { class: "muted" }, "You may read no source: ask an admin for a grant."));
    c.query = h("input", { name: "query", type: "search", value: queryBoxText(r), autocomplete: "off", spellcheck: "false", placeholder: "words, metadata.key=value, not.metadata.key=value" });
    const chosen = levelsFromQuery(r);
    c.levels = LEVELS.map((l) => h("input", { type: "checkbox", value: l, checked: chosen.includes(l), "aria-label": l }));
    const levelBox = h("div", { class: "levels", role: "group", "aria-label": "Levels" },
      LEVELS.map((l, i) => h("label", { class: `level-toggle lvl-${l.toLowerCase()}` }, c.levels[i], l)));
    c.contains = h("input", { name: "contains", value: r.contains || "", autocomplete: "off", placeholder: "a substring of the message" });
    c.searchLink = h("a", { class: "ghost-link", target: "_blank", rel: "noopener" }, "Open these matches as a search ↗");

    // Fires when.
    c.op = h("select", { name: "op", "aria-label": "Comparison" }, [[">=", "≥"], [">", ">"], ["<=", "≤"], ["<", "<"]].map(([v, t]) => h("option", { value: v, selected: r.op === v }, t)));
    const percent = r.kind === "ratio";
    c.threshold = h("input", { name: "threshold", type: "number", min: "0", step: "any", value: String(percent ? Math.round(r.threshold * 10000) / 100 : r.threshold), "aria-label": "Threshold" });
    c.thresholdUnit = h("span", { class: "unit" }, percent ? "%" : "matches");
    c.groupBy = h("input", { name: "group_by", value: r.group_by || "", placeholder: "source or metadata.<key>", autocomplete: "off" });
    c.denominator = h("input", { name: "denominator", type: "search", "aria-label": "Over the matches of", value: r.denominator ? queryBoxText(r.denominator) : "", placeholder: "empty: every entry of the rule's sources", autocomplete: "off" });
    c.denominatorLevel = h("select", { name: "denominator_level", "aria-label": "Denominator levels" },
      h("option", { value: "" }, "every level"), LEVELS.slice(1).map((l) => h("option", { value: l, selected: r.denominator && r.denominator.min_level === l }, `≥ ${l}`)));
    c.minVolume = h("input", { name: "min_volume", type: "number", min: "1", step: "1", value: String(r.min_volume) });
    c.expected = h("textarea", { name: "expected_groups", rows: "3", spellcheck: "false", placeholder: "one value per line, e.g. web1" });
    c.expected.value = (r.expected_groups || []).join("\n");
    c.lookback = h("input", { name: "seen_lookback_seconds", value: formatDuration(r.seen_lookback_seconds), placeholder: "e.g. 1d (empty: declared values only)" });
    c.learning = h("input", { name: "learning_seconds", value: formatDuration(r.learning_seconds) });

    c.timing = {};
    for (const [name] of TIMING) c.timing[name] = h("input", { name, value: formatDuration(r[name]), autocomplete: "off", inputmode: "text" });

    c.channels = this.channels.map((ch) => h("input", { type: "checkbox", name: "channel", value: String(ch.id), checked: r.channels.includes(ch.id) }));
    c.labels = h("textarea", { name: "labels", rows: "3", spellcheck: "false", placeholder: "team=payments" });
    c.labels.value = pairsText(r.labels);

    const kinds = (list, ...children) => h("div", { class: "kind-part", dataset: { kinds: list } }, children);
    this.general = errorBox();
    this.saved = h("p", { class: "ok", role: "status", hidden: true });
    c.range = h("select", { name: "range", "aria-label": "Preview range" }, h("option", { value: "24h" }, "last 24 hours"), h("option", { value: "7d" }, "last 7 days"));
    const previewButton = h("button", { type: "button" }, "Preview");
    const saveButton = h("button", { type: "submit", class: "primary" }, this.editing ? "Save changes" : "Create rule");
    const preview = h("div", { class: "preview-pane", "aria-live": "polite" });
    this.preview = new PreviewPane(preview, { sources: this.sources });

    this.form = h("form", { class: "rule-editor", novalidate: true },
      h("div", { class: "editor-cols" },
        h("div", { class: "editor-fields" },
          h("section", { class: "card" },
            h("h2", {}, this.editing ? `Edit rule ${r.name}` : "New alert rule"),
            this.editing ? h("p", { class: "note" }, "A change to what the rule evaluates starts its states afresh; its history stays.") : null,
            h("div", { class: "field-row" }, field("name", "Name", c.name), field("description", "Description", c.description)),
            field("kind", "Kind", h("div", { class: "kind-list", role: "radiogroup", "aria-label": "Kind" }, c.kinds))),
          h("section", { class: "card" },
            h("h2", {}, "Matching entries"),
            field("query", "Words and metadata terms", c.query, "As in the search box: words, metadata.status=503, not.metadata.host=a"),
            h("div", { class: "field-row" }, field("level", "Levels", levelBox), field("contains", "Contains", c.contains)),
            field("sources", "Sources", sourceBox),
            c.searchLink),
          h("section", { class: "card" },
            h("h2", {}, "Fires when"),
            kinds("threshold ratio absence", field("threshold", "The count of matches in the window is", h("span", { class: "inline-controls" }, c.op, c.threshold, c.thresholdUnit))),
            kinds("ratio", h("div", { class: "field-row" },
              field("denominator", "Over the matches of", h("span", { class: "inline-controls" }, c.denominator, c.denominatorLevel), "Words and metadata terms; empty counts every entry of the rule's sources"),
              field("min_volume", "At least this many below the line", c.minVolume, "Under it the group has no data, never an alarm from 1 of 2"))),
            kinds("threshold ratio absence", field("group_by", "Group by", c.groupBy, "Each group alerts on its own: source, or metadata.<key> (e.g. metadata.host)")),
            kinds("absence", h("div", { class: "field-row" },
              field("expected_groups", "Declared groups", c.expected, "Values that must be seen, one per line"),
              field("seen_lookback_seconds", "Also groups seen within", c.lookback, "A value seen that recently and quiet now alerts too"))),
            kinds("new_pattern", field("learning_seconds", "Learning period", c.learning, "Shapes seen within it are known; a shape not seen for longer is new again"))),
          h("section", { class: "card" },
            h("h2", {}, "Timing"),
            h("div", { class: "field-row timing" }, TIMING.slice(0, 4).map(([name, label, hint]) => field(name, label, c.timing[name], hint)))),
          h("section", { class: "card" },
            h("h2", {}, "Notify"),
            field(TIMING[4][0], TIMING[4][1], c.timing[TIMING[4][0]], TIMING[4][2]),
            field("channels", "Channels", h("div", { class: "source-list", role: "group", "aria-label": "Channels" },
              this.channels.map((ch, i) => h("label", { class: "check" }, c.channels[i], ` ${ch.name} (${ch.kind})`)),
              this.channels.length ? null : h("p", { class: "muted" }, this.session.actions.includes("admin") ? "No channel yet: add one under Channels." : "No channel yet: an admin adds them."))),
            field("labels", "Labels", c.labels, "name=value per line; silences match them, notifications carry them"))),
        h("aside", { class: "editor-side" },
          h("div", { class: "card" }, h("h2", {}, "Preview"),
            h("div", { class: "row-actions preview-controls" }, field("preview", "Over the", c.range), previewButton),
            preview),
          h("div", { class: "card save-box" }, this.general, this.saved, saveButton))));
    c.thresholdLabel = this.form.querySelector('.field[data-field="threshold"] > .label');
    root.append(this.form);
    this.preview.empty();

    this.form.addEventListener("change", (event) => {
      if (event.target.name === "kind") this.kindChanged(event.target.value);
      if (event.target === c.every && c.every.checked) for (const box of c.sources) box.checked = false;
      if (event.target.name === "source" && event.target.checked) c.every.checked = false;
      this.updateLink();
    });
    this.form.addEventListener("input", () => this.updateLink());
    previewButton.addEventListener("click", () => this.runPreview());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.showKind(r.kind);
    this.updateLink();
  }

  kind() {
    return this.form.querySelector('input[name="kind"]:checked').value;
  }

  kindChanged(kind) {
    const c = this.controls;
    const wasRatio = c.thresholdUnit.textContent === "%";
    if (kind === "ratio" && !wasRatio) c.threshold.value = "10";
    if (kind !== "ratio" && wasRatio) c.threshold.value = "10";
    if (kind === "absence" && Number(c.threshold.value) < 1) c.threshold.value = "1";
    if (kind !== "absence" && c.op.hidden) c.op.value = ">="; // absence fires below: "<"
    this.showKind(kind);
  }

  showKind(kind) {
    const c = this.controls;
    c.thresholdUnit.textContent = kind === "ratio" ? "%" : "matches";
    c.threshold.max = kind === "ratio" ? "100" : "";
    c.op.hidden = kind === "absence";
    c.thresholdLabel.textContent = {
      ratio: "The share of matches in the window is",
      absence: "Fires when the matches in the window are fewer than",
    }[kind] || "The count of matches in the window is";
    for (const part of this.form.querySelectorAll(".kind-part")) {
      const on = part.dataset.kinds.split(" ").includes(kind);
      part.hidden = !on;
      for (const input of part.querySelectorAll("input, select, textarea")) input.disabled = !on;
    }
  }

  // The search this rule's query matches, to open beside the editor.
  updateLink() {
    const c = this.controls;
    const { query, metadata, not_metadata } = queryFromBox(c.query.value);
    const levels = levelsToQuery(c.levels.filter((b) => b.checked).map((b) => b.value)) || { level: [], min_level: null };
    const state = { q: query || undefined, contains: c.contains.value || undefined, level: levels.level,
      min_level: levels.min_level && levels.min_level !== "DEBUG" ? levels.min_level : undefined,
      metadata: [...Object.entries(metadata).map(([key, value]) => ({ key, value, not: false })),
        ...Object.entries(not_metadata).map(([key, value]) => ({ key, value, not: true }))],
      source: c.every.checked ? [] : this.sources.filter((s, i) => c.sources[i].checked).map((s) => s.name),
      since: "24h" };
    c.searchLink.href = stateUrl(state);
  }

  // The rule as the API takes it, or the fields the browser could not read.
  body() {
    const c = this.controls;
    const kind = this.kind();
    const problems = [];
    const seconds = (name, input, { optional = false } = {}) => {
      if (optional && !input.value.trim()) return null;
      const value = parseDuration(input.value);
      if (value === null) problems.push({ where: name, message: `"${input.value}" is not a duration like 30s, 5m, 1h or 1d` });
      return value;
    };
    const levels = levelsToQuery(c.levels.filter((b) => b.checked).map((b) => b.value));
    if (!levels) problems.push({ where: "level", message: "choose at least one level" });
    const sources = c.every.checked ? [] : this.sources.filter((s, i) => c.sources[i].checked).map((s) => s.id);
    if (!sources.length && !c.every.checked) problems.push({ where: "sources", message: this.everySource ? "choose sources, or every source" : "choose at least one of your sources" });
    const labels = parsePairs(c.labels.value);
    if (labels.bad.length) problems.push({ where: "labels", message: `"${labels.bad[0]}" is not name=value` });
    const body = {
      name: c.name.value.trim(),
      description: c.description.value,
      kind,
      sources,
      ...queryFromBox(c.query.value),
      ...(levels || {}),
      contains: c.contains.value === "" ? null : c.contains.value,
      group_by: kind === "new_pattern" ? null : (c.groupBy.value.trim() || null),
      channels: this.channels.filter((ch, i) => c.channels[i].checked).map((ch) => ch.id),
      labels: labels.pairs,
    };
    for (const [name] of TIMING) body[name] = seconds(name, c.timing[name]);
    const raw = c.threshold.value;
    const number = raw.trim() === "" ? NaN : Number(raw);
    if (Number.isNaN(number)) problems.push({ where: "threshold", message: "is a number" });
    if (kind === "ratio") {
      if (number < 0 || number > 100) problems.push({ where: "threshold", message: "a ratio is a percentage from 0 to 100" });
      body.threshold = number / 100;
      body.op = c.op.value;
      const denominator = c.denominator.value.trim();
      body.denominator = denominator || c.denominatorLevel.value
        ? { ...queryFromBox(denominator), min_level: c.denominatorLevel.value || null }
        : null;
      body.min_volume = Number(c.minVolume.value);
    } else if (kind === "threshold") {
      body.threshold = number;
      body.op = c.op.value;
    } else if (kind === "absence") {
      body.threshold = number;
      body.expected_groups = c.expected.value.split("\n").map((v) => v.trim()).filter(Boolean);
      body.seen_lookback_seconds = seconds("seen_lookback_seconds", c.lookback, { optional: true });
    } else {
      body.threshold = 1;
      body.learning_seconds = seconds("learning_seconds", c.learning);
    }
    return { body, problems };
  }

  checked() {
    clearFieldErrors(this.form);
    this.saved.hidden = true;
    const { body, problems } = this.body();
    if (problems.length) {
      const error = new ApiError(422, problems.map((p) => `${p.where}: ${p.message}`).join("; "), problems);
      showFieldErrors(this.form, this.general, error, ALIASES);
      return null;
    }
    return body;
  }

  async runPreview() {
    const body = this.checked();
    if (!body) return;
    const range = this.controls.range.value;
    await this.preview.run({ ...body, name: body.name || "preview" }, range, (error) => showFieldErrors(this.form, this.general, error, ALIASES));
  }

  async save() {
    const body = this.checked();
    if (!body) return;
    try {
      const saved = this.editing ? await patch(`/api/v1/alert-rules/${this.editing}`, body) : await post("/api/v1/alert-rules", body);
      this.onSaved(saved);
    } catch (error) {
      showFieldErrors(this.form, this.general, error, ALIASES);
    }
  }

  redraw() {
    this.preview.redraw();
  }
}
