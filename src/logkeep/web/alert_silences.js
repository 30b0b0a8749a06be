// Silences: by rule, by one of a rule's groups, or by labels (`*` matches any text),
// from a start to an end, once or every day or week (a maintenance window). A silenced
// alert keeps its state; it only notifies nothing.

import { ApiError, del, get, post } from "./api.js";
import { clear, fromLocalInput, h, toLocalInput } from "./dom.js";
import {
  armedButton, clearFieldErrors, errorBox, field, groupLabel, pairsText, parsePairs, shortTime,
  showError, showFieldErrors, table,
} from "./alert_common.js";

const HOUR = 3600e3;

// Whether a silence mutes now, will, or did (domain/alert_states.py Silence.active_at).
export function silenceStatus(s, now = Date.now()) {
  const start = Date.parse(s.starts_at);
  const end = Date.parse(s.ends_at);
  if (!s.repeat) return now < start ? "scheduled" : now < end ? "active" : "expired";
  const until = s.repeat_until ? Date.parse(s.repeat_until) : Infinity;
  if (now >= until) return "expired";
  if (now < start) return "scheduled";
  const period = (s.repeat === "daily" ? 24 : 168) * HOUR;
  return (now - start) % period < end - start ? "active" : "between windows";
}

function scopeText(s, rules) {
  const rule = rules.find((r) => r.id === s.rule_id);
  const parts = [];
  if (s.rule_id !== null) parts.push(rule ? `rule ${rule.name}` : `rule ${s.rule_id}`);
  if (s.group_key !== null) parts.push(groupLabel(rule, s.group_key));
  const matchers = Object.entries(s.matchers || {}).map(([k, v]) => `${k}=${v}`);
  if (matchers.length) parts.push(`labels ${matchers.join(", ")}`);
  return parts.join(" · ");
}

export class SilencesTab {
  constructor(root, { session, rules, alerts, navigate, prefill }) {
    this.root = root;
    this.session = session;
    this.rules = rules;
    this.alerts = alerts; // current states: the groups a silence may name
    this.navigate = navigate;
    this.prefill = prefill; // {rule, group} from an alert's "Silence" link
  }

  async render() {
    const silences = await get("/api/v1/silences");
    const error = errorBox();
    const rows = silences.map((s) => {
      const status = silenceStatus(s);
      const remove = armedButton("Delete", "Click again to delete", { "aria-label": `Delete silence ${s.id}` }, async () => {
        try {
          await del(`/api/v1/silences/${s.id}`);
          this.navigate("/?view=alerts&tab=silences", { force: true });
        } catch (e) { showError(error, e); }
      });
      const when = s.repeat
        ? `${s.repeat}, ${shortTime(s.starts_at).slice(11, 16)} to ${shortTime(s.ends_at).slice(11, 16)} from ${shortTime(s.starts_at).slice(0, 10)}${s.repeat_until ? ` until ${shortTime(s.repeat_until)}` : ""}`
        : `${shortTime(s.starts_at)} to ${shortTime(s.ends_at)}`;
      return h("tr", { class: `silence silence-${status.replace(" ", "-")}`, dataset: { silenceId: String(s.id) } },
        h("td", {}, scopeText(s, this.rules)), h("td", {}, when), h("td", {}, h("span", { class: `state silence-status-${status.replace(" ", "-")}` }, status)),
        h("td", { class: "comment" }, s.comment || "—"), h("td", {}, remove));
    });
    const root = clear(this.root);
    root.append(h("section", {}, h("h2", {}, "Silences"),
      h("p", { class: "note" }, "A silenced alert keeps its state and history; it only notifies nothing. A firing notification held back is sent when the silence ends if the group still fires."),
      error,
      rows.length ? table(["mutes", "when", "now", "comment", ""], rows, { id: "silence-list" }) : h("p", { class: "muted", id: "silence-list" }, "No silences.")),
    this.form());
  }

  form() {
    const everySource = this.session.sources === null;
    const prefill = this.prefill || {};
    const rule = h("select", { name: "rule_id" },
      everySource ? h("option", { value: "" }, "any rule (by labels)") : null,
      this.rules.map((r) => h("option", { value: String(r.id), selected: String(r.id) === prefill.rule }, r.name)));
    const group = h("select", { name: "group" });
    const fillGroups = () => {
      const chosen = this.rules.find((r) => String(r.id) === rule.value);
      const keys = [...new Set(this.alerts.filter((a) => chosen && a.rule_id === chosen.id && a.group_key).map((a) => a.group_key))];
      if (prefill.group && chosen && String(chosen.id) === prefill.rule && !keys.includes(prefill.group)) keys.push(prefill.group);
      clear(group).append(h("option", { value: "" }, "every group"),
        ...keys.map((k) => h("option", { value: k, selected: k === prefill.group }, groupLabel(chosen, k))));
      group.disabled = !chosen;
    };
    fillGroups();
    rule.addEventListener("change", fillGroups);
    const matchers = h("textarea", { name: "matchers", rows: "2", spellcheck: "false", placeholder: "team=pay*" });
    matchers.value = pairsText(prefill.matchers);
    const now = Date.now();
    const starts = h("input", { type: "datetime-local", name: "starts_at", step: "60", value: toLocalInput(new Date(now).toISOString()).slice(0, 16) });
    const ends = h("input", { type: "datetime-local", name: "ends_at", step: "60", value: toLocalInput(new Date(now + 2 * HOUR).toISOString()).slice(0, 16) });
    const quick = [["1h", 1], ["4h", 4], ["1d", 24]].map(([label, hours]) => {
      const b = h("button", { type: "button", class: "small", "aria-label": `Ends ${label} after the start` }, `+${label}`);
      b.addEventListener("click", () => {
        const start = fromLocalInput(starts.value) || new Date().toISOString();
        ends.value = toLocalInput(new Date(Date.parse(start) + hours * HOUR).toISOString()).slice(0, 16);
      });
      return b;
    });
    const repeat = h("select", { name: "repeat" }, h("option", { value: "" }, "once"), h("option", { value: "daily" }, "every day (maintenance window)"), h("option", { value: "weekly" }, "every week (maintenance window)"));
    const until = h("input", { type: "datetime-local", name: "repeat_until", step: "60" });
    const comment = h("input", { name: "comment", maxlength: "1000", placeholder: "why, and who to ask" });
    const general = errorBox();
    const form = h("form", { class: "card silence-form", novalidate: true },
      h("h2", {}, "New silence"),
      field("rule_id", "Rule", rule), field("group", "Group", group),
      field("matchers", "Labels match", matchers, "name=value per line; * matches any text"),
      field("starts_at", "Starts", starts), field("ends_at", "Ends", h("span", { class: "inline-controls" }, ends, quick)),
      field("repeat", "Repeats", repeat), field("repeat_until", "Repeats until", until, "empty: for ever"),
      field("comment", "Comment", comment),
      h("div", { class: "form-end" }, h("button", { type: "submit", class: "primary" }, "Create silence"), general));
    const showRepeat = () => { form.querySelector('.field[data-field="repeat_until"]').hidden = !repeat.value; };
    repeat.addEventListener("change", showRepeat);
    showRepeat();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      const parsed = parsePairs(matchers.value);
      const body = {
        rule_id: rule.value ? Number(rule.value) : null,
        group: rule.value && group.value ? group.value : null,
        matchers: parsed.pairs,
        starts_at: fromLocalInput(starts.value),
        ends_at: fromLocalInput(ends.value),
        repeat: repeat.value || null,
        repeat_until: repeat.value ? fromLocalInput(until.value) : null,
        comment: comment.value,
      };
      const refuse = (where, message) => { throw new ApiError(422, `${where}: ${message}`, [{ where, message }]); };
      try {
        if (parsed.bad.length) refuse("matchers", `"${parsed.bad[0]}" is not name=value`);
        if (!body.ends_at) refuse("ends_at", "choose when it ends");
        await post("/api/v1/silences", body);
        this.navigate("/?view=alerts&tab=silences", { force: true });
      } catch (e) {
        showFieldErrors(form, general, e);
      }
    });
    return form;
  }
}
