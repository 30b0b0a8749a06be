// The Alerts view (analysts and admins; the API refuses viewers anyway): every rule's
// groups and their states with the value against the threshold and a link to the
// matching search; the rules, each with its history; the rule editor with its preview;
// silences; and, for admins, notification channels. Loaded only when opened, so the
// search page does not carry it.

import { del, get, patch } from "./api.js";
import { clear, h } from "./dom.js";
import {
  KIND_NAMES, STATES, ago, armedButton, conditionText, errorBox, formatDuration, groupLabel,
  levelText, queryText, readableSources, searchLink, shortTime, showError, sourceName, stateBadge,
  table, valueAgainst,
} from "./alert_common.js";
import { RuleEditor, ruleFromSearch } from "./alert_editor.js";
import { SilencesTab } from "./alert_silences.js";
import { ChannelsTab } from "./alert_channel_admin.js";
import { readState } from "./state.js";

const REFRESH_MS = 10_000;
const STATE_FILTERS = [["", "every state"], ["firing", "firing"], ["pending", "pending"], ["no_data", "no data"], ["resolved", "resolved"], ["ok", "ok"]];

// The view's stylesheet, fetched with the view (the search page does not need it).
let styled = null;
function loadStyles() {
  if (!styled) {
    styled = new Promise((resolve) => {
      const link = h("link", { rel: "stylesheet", href: new URL("./alerts.css", import.meta.url).href });
      link.addEventListener("load", resolve, { once: true });
      link.addEventListener("error", resolve, { once: true }); // unstyled beats blank
      document.head.append(link);
    });
  }
  return styled;
}

export class AlertsView {
  constructor(root, { session, navigate }) {
    this.root = root;
    this.session = session;
    this.navigate = navigate;
    this.timer = null;
    this.generation = 0;
    this.editor = null;
  }

  link(url, text, attrs = {}) {
    const a = h("a", { href: url, ...attrs }, text);
    a.addEventListener("click", (event) => {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      this.navigate(url);
    });
    return a;
  }

  hide() {
    clearTimeout(this.timer);
    this.timer = null;
    this.generation++;
  }

  redraw() {
    if (this.editor) this.editor.redraw();
  }

  async show(search = location.search) {
    this.hide();
    const gen = this.generation;
    const params = new URLSearchParams(search);
    await loadStyles();
    if (gen !== this.generation) return;
    const root = clear(this.root);
    this.editor = null;
    if (!this.session.actions.includes("saved_searches")) {
      root.append(h("div", { class: "card" }, h("h1", {}, "Alerts"),
        h("p", {}, "Alert rules are for analysts and admins. Your account can search and read logs only.")));
      return;
    }
    const admin = this.session.actions.includes("admin");
    const tabs = [["alerts", "Alerts"], ["rules", "Rules"], ["edit", "New rule"], ["silences", "Silences"], ...(admin ? [["channels", "Channels"]] : [])];
    let tab = params.get("tab") || "alerts";
    if (tab === "history" && !params.get("rule")) tab = "rules";
    if (tab !== "history" && !tabs.some(([t]) => t === tab)) tab = "alerts";
    const nav = h("nav", { class: "tabs admin-tabs", "aria-label": "Alerts" },
      tabs.map(([name, label]) => this.link(`/?view=alerts&tab=${name}`, label,
        { "aria-current": name === tab && !(name === "edit" && params.get("rule")) ? "page" : null })));
    const body = h("div", { class: "alerts-body" });
    root.append(h("h1", {}, "Alerts"), nav, body);
    try {
      const sources = await readableSources();
      if (gen !== this.generation) return;
      const views = {
        alerts: () => this.alertsTab(body, params, sources, gen),
        rules: () => this.rulesTab(body, params, sources),
        history: () => this.historyTab(body, params, sources),
        edit: () => this.editTab(body, params, sources),
        silences: () => this.silencesTab(body, params),
        channels: () => new ChannelsTab(body, { navigate: this.navigate }).render(),
      };
      await views[tab]();
    } catch (error) {
      if (gen !== this.generation) return;
      body.append(h("p", { class: "error banner", role: "alert" }, error.message));
    }
  }

  // -- the alerts: every group's state ---------------------------------------------------

  async alertsTab(body, params, sources, gen) {
    const filter = params.get("state") || "";
    const [answer, rules] = await Promise.all([get("/api/v1/alerts", { state: filter || undefined }), get("/api/v1/alert-rules")]);
    if (gen !== this.generation) return;
    const byRule = new Map(rules.map((r) => [r.id, r]));
    const health = new Map(answer.rules.map((r) => [r.id, r]));
    const groups = new Map();
    for (const a of answer.alerts) {
      if (!groups.has(a.rule_id)) groups.set(a.rule_id, []);
      groups.get(a.rule_id).push(a);
    }
    // Rules with alerts first (the API's order: firing first), then the others by name.
    const order = [...groups.keys(), ...rules.filter((r) => !groups.has(r.id)).map((r) => r.id)];
    const select = h("select", { "aria-label": "Show alerts in state" },
      STATE_FILTERS.map(([v, label]) => h("option", { value: v, selected: v === filter }, label)));
    select.addEventListener("change", () => this.navigate(`/?view=alerts${select.value ? `&state=${select.value}` : ""}`));
    const count = (state) => answer.alerts.filter((a) => a.state === state).length;
    const errors = answer.rules.filter((r) => r.health === "error").length;
    const counters = h("p", { class: "alert-counters", "aria-live": "polite" },
      h("span", { class: "counter" }, stateBadge("firing"), ` ${count("firing")}`),
      h("span", { class: "counter" }, stateBadge("pending"), ` ${count("pending")}`),
      h("span", { class: "counter" }, stateBadge("error"), ` ${errors} rule${errors === 1 ? "" : "s"} failing`),
      h("span", { class: "muted" }, ` · updated ${shortTime(new Date().toISOString()).slice(11)}, every ${REFRESH_MS / 1000} s`));
    const refresh = h("button", { type: "button", class: "small" }, "Refresh");
    refresh.addEventListener("click", () => this.navigate(location.pathname + location.search, { force: true }));
    const list = h("table", { class: "grid alert-list", id: "alert-list" },
      h("thead", {}, h("tr", {}, ["state", "group", "value", "last change", "reason", ""].map((x) => h("th", {}, x)))));
    for (const id of order) {
      const rule = byRule.get(id);
      if (!rule) continue;
      if (filter && !groups.has(id)) continue;
      list.append(this.ruleBlock(rule, health.get(id), groups.get(id) || [], sources));
    }
    const empty = !rules.length
      ? h("p", { class: "muted" }, "No alert rules yet. ", this.link("/?view=alerts&tab=edit", "Create one"), ", or open a search and choose “Alert on this search”.")
      : null;
    clear(body).append(h("div", { class: "toolbar" }, counters, h("div", { class: "spacer" }), select, refresh), empty || list);
    // Refreshed in place (the list is replaced once the new one has arrived, so the
    // page keeps its scroll position); not while the tab is in the background.
    const again = () => {
      if (gen !== this.generation) return;
      if (document.hidden) {
        this.timer = setTimeout(again, REFRESH_MS);
        return;
      }
      this.alertsTab(body, params, sources, gen).catch((error) => {
        if (gen !== this.generation) return;
        for (const old of body.querySelectorAll(".refresh-error")) old.remove();
        body.prepend(h("p", { class: "error banner refresh-error", role: "alert" }, `Not refreshed: ${error.message}`));
        this.timer = setTimeout(again, REFRESH_MS);
      });
    };
    this.timer = setTimeout(again, REFRESH_MS);
  }

  ruleBlock(rule, health, alerts, sources) {
    const tbody = h("tbody", { class: "alert-rule", dataset: { ruleId: String(rule.id) } });
    const failing = health && health.health === "error";
    const status = !rule.is_active ? h("span", { class: "state state-paused" }, "paused")
      : failing ? stateBadge("error") : null;
    tbody.append(h("tr", { class: "rule-head" }, h("th", { colspan: "6", scope: "rowgroup" },
      h("span", { class: "rule-name" }, rule.name), " ", status,
      h("span", { class: "rule-meta" }, `${KIND_NAMES[rule.kind]} · ${conditionText(rule)} · every ${formatDuration(rule.interval_seconds)}`,
        health && health.evaluated_at ? ` · evaluated ${ago(health.evaluated_at)}` : " · not evaluated yet"),
      h("span", { class: "rule-actions" },
        this.link(`/?view=alerts&tab=history&rule=${rule.id}`, "History", { "aria-label": `History of ${rule.name}` }), " ",
        this.link(`/?view=alerts&tab=edit&rule=${rule.id}`, "Edit", { "aria-label": `Edit ${rule.name}` }), " ",
        this.link(`/?view=alerts&tab=silences&rule=${rule.id}`, "Silence", { "aria-label": `Silence ${rule.name}` })))));
    if (failing) tbody.append(h("tr", { class: "rule-error" }, h("td", {}, stateBadge("error")), h("td", { colspan: "5" }, health.reason || "evaluation failed")));
    if (!alerts.length && !failing) {
      tbody.append(h("tr", { class: "quiet" }, h("td", {}, stateBadge("ok")), h("td", { colspan: "5", class: "muted" },
        health && health.last_tick ? "No group is pending or firing." : "Its first evaluation is at its next tick.")));
    }
    for (const a of alerts) {
      const from = new Date(Date.parse(a.since) - rule.window_seconds * 1000).toISOString();
      const to = ["resolved", "ok"].includes(a.state) ? a.updated_at : undefined;
      const silence = `/?view=alerts&tab=silences&rule=${rule.id}${a.group_key ? `&group=${encodeURIComponent(a.group_key)}` : ""}`;
      tbody.append(h("tr", { class: `alert alert-${a.state}`, dataset: { state: a.state, group: a.group_key } },
        h("td", {}, stateBadge(a.state), a.silenced_by ? h("span", { class: "state state-silenced", title: `silence ${a.silenced_by}` }, "silenced") : null),
        h("td", { class: "group" }, groupLabel(rule, a.group_key, a.labels)),
        h("td", { class: "num" }, valueAgainst(a)),
        h("td", {}, h("time", { datetime: a.since, title: shortTime(a.since) }, ago(a.since)), h("span", { class: "muted" }, ` ${shortTime(a.since).slice(5, 16)}`)),
        h("td", { class: "reason" }, a.reason || ""),
        h("td", { class: "actions" },
          this.link(searchLink(rule, sources, { group: a.group_key, from, to }), "Search", { "aria-label": `Search the matches of ${rule.name} ${groupLabel(rule, a.group_key, a.labels)}` }), " ",
          this.link(silence, "Silence", { "aria-label": `Silence ${rule.name} ${groupLabel(rule, a.group_key, a.labels)}` }))));
    }
    return tbody;
  }

  // -- rules -----------------------------------------------------------------------------

  async rulesTab(body, params, sources) {
    const [rules, channels] = await Promise.all([get("/api/v1/alert-rules"), get("/api/v1/alert-channels")]);
    const error = errorBox();
    const saved = Number(params.get("saved"));
    const channelName = (id) => (channels.find((c) => c.id === id) || { name: `channel ${id}` }).name;
    const rows = rules.map((r) => {
      const toggle = h("button", { type: "button", class: "small", "aria-label": `${r.is_active ? "Pause" : "Resume"} ${r.name}` }, r.is_active ? "Pause" : "Resume");
      toggle.addEventListener("click", async () => {
        try {
          await patch(`/api/v1/alert-rules/${r.id}`, { is_active: !r.is_active });
          this.navigate("/?view=alerts&tab=rules", { force: true });
        } catch (e) { showError(error, e); }
      });
      const remove = armedButton("Delete", "Click again to delete", { "aria-label": `Delete ${r.name}` }, async () => {
        try {
          await del(`/api/v1/alert-rules/${r.id}`);
          this.navigate("/?view=alerts&tab=rules", { force: true });
        } catch (e) { showError(error, e); }
      });
      const where = r.sources.length ? r.sources.map((id) => sourceName(sources, id)).join(", ") : "every source";
      return h("tr", { class: r.id === saved ? "just-saved" : null, dataset: { ruleId: String(r.id) } },
        h("td", {}, this.link(`/?view=alerts&tab=edit&rule=${r.id}`, r.name), r.description ? h("div", { class: "muted" }, r.description) : null),
        h("td", {}, KIND_NAMES[r.kind]),
        h("td", { class: "query" }, h("code", {}, queryText(r) || "any message"), h("div", { class: "muted" }, `${levelText(r)} · ${where}`),
          r.group_by ? h("div", { class: "muted" }, `by ${r.group_by}`) : null),
        h("td", {}, conditionText(r)),
        h("td", {}, `every ${formatDuration(r.interval_seconds)}`, r.for_seconds ? `, for ${formatDuration(r.for_seconds)}` : "",
          r.keep_firing_for_seconds ? `, keep ${formatDuration(r.keep_firing_for_seconds)}` : ""),
        h("td", {}, r.channels.length ? r.channels.map(channelName).join(", ") : h("span", { class: "muted" }, "none"),
          Object.keys(r.labels).length ? h("div", { class: "labels" }, Object.entries(r.labels).map(([k, v]) => h("span", { class: "label-chip" }, `${k}=${v}`))) : null),
        h("td", {}, r.is_active ? "active" : "paused"),
        h("td", { class: "actions" }, this.link(`/?view=alerts&tab=history&rule=${r.id}`, "History", { "aria-label": `History of ${r.name}` }), " ", toggle, " ", remove));
    });
    clear(body).append(h("section", {},
      h("div", { class: "toolbar" }, h("h2", {}, "Rules"), h("div", { class: "spacer" }), this.link("/?view=alerts&tab=edit", "New rule", { class: "button primary" })),
      saved ? h("p", { class: "ok", role: "status" }, "Saved. Its first evaluation is at its next tick.") : null,
      error,
      rows.length ? table(["name", "kind", "matches", "fires when", "timing", "notifies", "", ""], rows, { id: "rule-list" })
        : h("p", { class: "muted" }, "No alert rules yet.")));
  }

  async historyTab(body, params, sources) {
    const id = Number(params.get("rule"));
    const rule = await get(`/api/v1/alert-rules/${id}`);
    const rows = h("tbody", {});
    const more = h("button", { type: "button", hidden: true }, "Older");
    let before = null;
    const load = async () => {
      const page = await get(`/api/v1/alert-rules/${id}/history`, { limit: 100, before: before || undefined });
      for (const e of page.events) {
        const what = e.kind === "transition" ? h("span", {}, stateBadge(e.from_state), " → ", stateBadge(e.to_state))
          : e.kind === "notification" ? h("span", { class: `notification notification-${e.to_state}` }, `notification ${e.to_state}`)
            : h("span", { class: `event-${e.kind}` }, e.kind);
        rows.append(h("tr", { class: `event event-${e.kind}` }, h("td", {}, shortTime(e.at)), h("td", {}, what),
          h("td", {}, e.kind === "rule" ? "" : groupLabel(rule, e.group_key)), h("td", { class: "num" }, e.value === null ? "" : valueAgainst({ ...rule, value: e.value })),
          h("td", { class: "reason" }, e.detail)));
      }
      before = page.next_before;
      more.hidden = !before;
    };
    more.addEventListener("click", () => load());
    await load();
    clear(body).append(h("section", {},
      h("div", { class: "toolbar" }, h("h2", {}, `History of ${rule.name}`), h("div", { class: "spacer" }),
        this.link(`/?view=alerts&tab=edit&rule=${id}`, "Edit rule"), " ",
        this.link(searchLink(rule, sources, {}), "Search its matches")),
      rows.childNodes.length ? h("table", { class: "grid", id: "history" }, h("thead", {}, h("tr", {}, ["at", "what", "group", "value", "detail"].map((x) => h("th", {}, x)))), rows)
        : h("p", { class: "muted" }, "Nothing yet: transitions, notifications and errors appear here once it is evaluated."),
      more));
  }

  // -- the editor ------------------------------------------------------------------------

  async editTab(body, params, sources) {
    const id = params.get("rule");
    const channels = await get("/api/v1/alert-channels");
    let rule;
    let note = null;
    if (id) {
      rule = await get(`/api/v1/alert-rules/${encodeURIComponent(id)}`);
    } else {
      const search = readState(`?${params}`);
      const made = ruleFromSearch(search, sources);
      rule = made.rule;
      const fromSearch = search.q || search.contains || search.source.length || search.level.length || search.min_level || search.metadata.length;
      if (fromSearch) note = h("p", { class: "note" }, "Started from your search: its words, metadata terms, levels and sources.");
      else Object.assign(rule, { level: [], min_level: "ERROR" }); // the API's default
      if (made.unknown.length) note = h("p", { class: "error" }, `Not among your sources: ${made.unknown.join(", ")}`);
    }
    clear(body).append(note || "");
    const box = h("div", {});
    body.append(box);
    this.editor = new RuleEditor(box, {
      rule, sources, channels, session: this.session, editing: id ? Number(id) : null,
      onSaved: (saved) => this.navigate(`/?view=alerts&tab=rules&saved=${saved.id}`),
    });
    this.editor.render();
  }

  async silencesTab(body, params) {
    const [rules, answer] = await Promise.all([get("/api/v1/alert-rules"), get("/api/v1/alerts")]);
    const tab = new SilencesTab(body, {
      session: this.session, rules, alerts: answer.alerts, navigate: this.navigate,
      prefill: { rule: params.get("rule"), group: params.get("group") },
    });
    await tab.render();
  }
}
