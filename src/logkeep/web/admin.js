// Administration (admins only; the API refuses everyone else anyway): sources and their
// parsing rules with a preview on a sample line before saving, users and their grants,
// API keys (a new key is shown once), and alert rules.

import { ApiError, del, get, patch, post } from "./api.js";
import { clear, copyText, formatTime, h } from "./dom.js";

const FORMATS = ["json", "logfmt", "nginx_combined", "apache_combined", "syslog", "regex", "text"];
const TABS = [["sources", "Sources"], ["users", "Users"], ["keys", "API keys"], ["alerts", "Alert rules"]];

function errorBox() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(box, error) {
  box.hidden = !error;
  box.textContent = error ? (error instanceof ApiError ? error.message : String(error.message || error)) : "";
}

function table(headers, rows) {
  return h("table", { class: "grid" }, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

export class AdminView {
  constructor(root, { session, navigate }) {
    this.root = root;
    this.session = session;
    this.navigate = navigate;
    this.sources = [];
  }

  async show(tab) {
    const root = clear(this.root);
    if (!this.session.actions.includes("admin")) {
      root.append(h("div", { class: "card" }, h("h1", {}, "Administration"),
        h("p", {}, "Administration is for admins. Your account can search and read logs only.")));
      return;
    }
    tab = TABS.some(([t]) => t === tab) ? tab : "sources";
    const nav = h("nav", { class: "tabs admin-tabs", "aria-label": "Administration" });
    for (const [name, label] of TABS) {
      const link = h("a", { href: `/?view=admin&tab=${name}`, "aria-current": name === tab ? "page" : null }, label);
      link.addEventListener("click", (event) => { event.preventDefault(); this.navigate(`/?view=admin&tab=${name}`); });
      nav.append(link);
    }
    const body = h("div", { class: "admin-body" });
    root.append(h("h1", {}, "Administration"), nav, body);
    try {
      this.sources = await get("/api/v1/sources");
    } catch (error) {
      body.append(h("p", { class: "error" }, error.message));
      return;
    }
    const tabs = {
      sources: () => this.sourcesTab(body),
      users: () => this.usersTab(body),
      keys: () => this.keysTab(body),
      alerts: () => this.alertsTab(body),
    };
    try {
      await tabs[tab]();
    } catch (error) {
      body.append(h("p", { class: "error", role: "alert" }, error.message));
    }
  }

  sourceName(id) {
    const s = this.sources.find((x) => x.id === id);
    return s ? s.name : `#${id}`;
  }

  // -- sources ---------------------------------------------------------------------------

  async sourcesTab(body) {
    const editor = h("div", { class: "card", id: "source-editor" }, h("p", { class: "muted" }, "Choose a source to edit its parsing rules."));
    const rows = this.sources.map((s) => {
      const edit = h("button", { type: "button", class: "small", "aria-label": `Edit ${s.name}` }, "Edit rules");
      edit.addEventListener("click", () => this.editSource(editor, s));
      return h("tr", {}, h("td", {}, s.name), h("td", {}, s.source_type), h("td", {}, s.format_type),
        h("td", {}, s.is_active ? "active" : "inactive"), h("td", {}, edit));
    });
    body.append(h("section", {}, h("h2", {}, "Sources"), table(["name", "type", "format", "state", ""], rows)), editor, this.newSourceForm());
  }

  editSource(editor, source) {
    clear(editor);
    const format = h("select", { name: "format_type", "aria-label": "Format" }, FORMATS.map((f) => h("option", { value: f, selected: f === source.format_type }, f)));
    if (!FORMATS.includes(source.format_type)) format.append(h("option", { value: source.format_type, selected: true }, source.format_type));
    const rules = h("textarea", { name: "parsing_rules", rows: "12", spellcheck: "false", "aria-label": "Parsing rules (JSON)" });
    rules.value = JSON.stringify(source.parsing_rules, null, 2);
    const sample = h("textarea", { name: "sample", rows: "3", spellcheck: "false", "aria-label": "Sample line", placeholder: "Paste a raw log line to try the rules on" });
    const preview = h("div", { class: "preview", "aria-live": "polite" });
    const error = errorBox();
    const saved = h("p", { class: "ok", hidden: true });
    const parseRules = () => {
      try {
        const parsed = JSON.parse(rules.value || "{}");
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("must be a JSON object");
        return parsed;
      } catch (e) {
        throw new ApiError(422, `parsing_rules: ${e.message}`);
      }
    };
    const tryIt = h("button", { type: "button" }, "Preview");
    tryIt.addEventListener("click", async () => {
      showError(error, null);
      clear(preview);
      try {
        const answer = await post("/api/v1/sources/preview", { format_type: format.value, parsing_rules: parseRules(), line: sample.value });
        preview.append(this.previewResult(answer));
        const hint = preview.previousElementSibling;
        if (hint && hint.classList.contains("muted")) hint.remove();
      } catch (e) {
        showError(error, e);
      }
    });
    const save = h("button", { type: "button", class: "primary" }, "Save rules");
    save.addEventListener("click", async () => {
      showError(error, null);
      saved.hidden = true;
      try {
        const updated = await patch(`/api/v1/sources/${source.id}`, { format_type: format.value, parsing_rules: parseRules() });
        Object.assign(source, updated);
        saved.hidden = false;
        saved.textContent = `Saved ${source.name}: new entries are parsed with these rules.`;
      } catch (e) {
        showError(error, e);
      }
    });
    const toggle = h("button", { type: "button" }, source.is_active ? "Deactivate" : "Activate");
    toggle.addEventListener("click", async () => {
      try {
        Object.assign(source, await patch(`/api/v1/sources/${source.id}`, { is_active: !source.is_active }));
        this.editSource(editor, source);
      } catch (e) {
        showError(error, e);
      }
    });
    editor.append(h("h2", {}, `Rules of ${source.name}`),
      h("div", { class: "editor-grid" },
        h("div", {},
          h("label", {}, "Format ", format),
          h("label", { class: "block" }, "Parsing rules (JSON)", rules),
          h("label", { class: "block" }, "Sample line", sample),
          h("div", { class: "row-actions" }, tryIt, save, toggle),
          error, saved),
        h("div", {}, h("h3", { class: "preview-title" }, "Preview"),
          preview.childNodes.length ? null : h("p", { class: "muted" }, "Paste a raw line and press Preview to see the entry these rules make, before saving."),
          preview)));
  }

  previewResult(answer) {
    if (!answer.accepted) return h("div", { class: "preview-result bad" }, h("strong", {}, "Would be rejected: "), answer.reason);
    const e = answer.entry;
    return h("div", { class: `preview-result ${answer.parsed ? "good" : "warn"}` },
      h("p", {}, answer.parsed ? "Parsed:" : `Does not fit the rules (${answer.reason}); it would be stored whole:`),
      h("dl", { class: "fields" },
        h("dt", {}, "time"), h("dd", {}, answer.line_has_time ? e.timestamp : "when it arrives (the line carries no time)"),
        h("dt", {}, "level"), h("dd", {}, h("span", { class: `lvl-badge lvl-${e.level.toLowerCase()}` }, e.level)),
        h("dt", {}, "message"), h("dd", {}, h("pre", { class: "message" }, e.message)),
        h("dt", {}, "metadata"), h("dd", {}, h("pre", { class: "message" }, JSON.stringify(e.metadata, null, 2)))));
  }

  newSourceForm() {
    const error = errorBox();
    const form = h("form", { class: "card form-grid" },
      h("h2", {}, "New source"),
      h("label", {}, "Name ", h("input", { name: "name", required: true, pattern: "[a-z0-9][a-z0-9_.\\-]{0,62}" })),
      h("label", {}, "Type ", h("input", { name: "source_type", required: true, value: "application" })),
      h("label", {}, "Format ", h("select", { name: "format_type" }, FORMATS.map((f) => h("option", { value: f }, f)))),
      h("label", {}, "Description ", h("input", { name: "description" })),
      h("button", { type: "submit", class: "primary" }, "Create source"), error);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      try {
        await post("/api/v1/sources", data);
        this.navigate("/?view=admin&tab=sources", { force: true });
      } catch (e) {
        showError(error, e);
      }
    });
    return form;
  }

  // -- users ------------------------------------------------------------------------------

  async usersTab(body) {
    const users = await get("/api/v1/users");
    const grantsBox = h("div", { class: "card" }, h("p", { class: "muted" }, "Choose a user to see and change the sources they may read."));
    const error = errorBox();
    const rows = users.map((u) => {
      const role = h("select", { "aria-label": `Role of ${u.username}` }, ["admin", "analyst", "viewer"].map((r) => h("option", { value: r, selected: r === u.role }, r)));
      role.addEventListener("change", async () => {
        try { await patch(`/api/v1/users/${u.id}`, { role: role.value }); } catch (e) { showError(error, e); }
      });
      const active = h("button", { type: "button", class: "small" }, u.is_active ? "Disable" : "Enable");
      active.addEventListener("click", async () => {
        try {
          Object.assign(u, await patch(`/api/v1/users/${u.id}`, { is_active: !u.is_active }));
          active.textContent = u.is_active ? "Disable" : "Enable";
        } catch (e) { showError(error, e); }
      });
      const grants = h("button", { type: "button", class: "small" }, "Grants");
      grants.addEventListener("click", () => this.editGrants(grantsBox, u));
      return h("tr", {}, h("td", {}, u.username), h("td", {}, u.email), h("td", {}, role),
        h("td", {}, u.last_login ? formatTime(u.last_login) : "never"), h("td", {}, active, " ", grants));
    });
    const form = h("form", { class: "card form-grid" }, h("h2", {}, "New user"),
      h("label", {}, "Username ", h("input", { name: "username", required: true })),
      h("label", {}, "Email ", h("input", { name: "email", type: "email", required: true })),
      h("label", {}, "Password ", h("input", { name: "password", type: "password", minlength: "12", required: true, autocomplete: "new-password" })),
      h("label", {}, "Role ", h("select", { name: "role" }, ["viewer", "analyst", "admin"].map((r) => h("option", { value: r }, r)))),
      h("button", { type: "submit", class: "primary" }, "Create user"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await post("/api/v1/users", Object.fromEntries(new FormData(form)));
        this.navigate("/?view=admin&tab=users", { force: true });
      } catch (e) { showError(error, e); }
    });
    body.append(h("section", {}, h("h2", {}, "Users"), error, table(["username", "email", "role", "last login", ""], rows)), grantsBox, form);
  }

  async editGrants(box, user) {
    clear(box).append(h("h2", {}, `Sources ${user.username} may read`));
    if (user.role === "admin") {
      box.append(h("p", {}, "Admins read every source."));
      return;
    }
    const error = errorBox();
    let granted;
    try {
      granted = new Set((await get(`/api/v1/users/${user.id}/grants`)).sources);
    } catch (e) {
      showError(error, e);
      box.append(error);
      return;
    }
    for (const s of this.sources) {
      const box_ = h("input", { type: "checkbox", checked: granted.has(s.id), "aria-label": `Grant ${s.name}` });
      box_.addEventListener("change", async () => {
        try {
          if (box_.checked) await post(`/api/v1/users/${user.id}/grants`, { sources: [s.id] });
          else await del(`/api/v1/users/${user.id}/grants`, { sources: [s.id] });
        } catch (e) {
          box_.checked = !box_.checked;
          showError(error, e);
        }
      });
      box.append(h("label", { class: "check" }, box_, ` ${s.name}`));
    }
    box.append(error);
  }

  // -- API keys ---------------------------------------------------------------------------

  async keysTab(body) {
    const keys = await get("/api/v1/api-keys");
    const error = errorBox();
    const rows = keys.map((k) => {
      const revoke = h("button", { type: "button", class: "small danger" }, "Revoke");
      let armed = false;
      revoke.addEventListener("click", async () => {
        if (!armed) {
          armed = true;
          revoke.textContent = "Click again to revoke";
          return;
        }
        try {
          await del(`/api/v1/api-keys/${k.id}`);
          this.navigate("/?view=admin&tab=keys", { force: true });
        } catch (e) { showError(error, e); }
      });
      return h("tr", {}, h("td", {}, k.name), h("td", {}, h("code", {}, `${k.prefix}…`)), h("td", {}, k.scopes.join(", ")),
        h("td", {}, k.all_sources ? "all" : k.sources.map((id) => this.sourceName(id)).join(", ")),
        h("td", {}, k.last_used_at ? formatTime(k.last_used_at) : "never"),
        h("td", {}, k.revoked_at ? `revoked ${formatTime(k.revoked_at)}` : revoke));
    });
    const shown = h("div", { class: "card key-once", hidden: true });
    const form = h("form", { class: "card form-grid" }, h("h2", {}, "New API key"),
      h("label", {}, "Name ", h("input", { name: "name", required: true, maxlength: "100" })),
      h("fieldset", {}, h("legend", {}, "Scopes"),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "scope", value: "ingest", checked: true }), " ingest"),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "scope", value: "read" }), " read")),
      h("fieldset", {}, h("legend", {}, "Sources"),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "all_sources", checked: true }), " all sources"),
        this.sources.map((s) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "source", value: String(s.id) }), ` ${s.name}`))),
      h("button", { type: "submit", class: "primary" }, "Create key"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      try {
        const created = await post("/api/v1/api-keys", {
          name: data.get("name"), scopes: data.getAll("scope"),
          all_sources: data.get("all_sources") === "on", sources: data.getAll("source").map(Number),
        });
        const copy = h("button", { type: "button", class: "small" }, "Copy");
        copy.addEventListener("click", () => copyText(created.key, copy));
        clear(shown).append(h("h2", {}, `Key ${created.name}`),
          h("p", {}, "Copy it now: logkeep keeps only its digest and will not show it again."),
          h("code", { class: "secret", id: "new-key" }, created.key), " ", copy);
        shown.hidden = false;
        form.reset();
      } catch (e) { showError(error, e); }
    });
    body.append(h("section", {}, h("h2", {}, "API keys"), error,
      table(["name", "prefix", "scopes", "sources", "last used", ""], rows)), shown, form);
  }

  // -- alert rules ------------------------------------------------------------------------

  async alertsTab(body) {
    const rules = await get("/api/v1/alert-rules");
    const error = errorBox();
    const rows = rules.map((r) => {
      const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete ${r.name}` }, "Delete");
      remove.addEventListener("click", async () => {
        try {
          await del(`/api/v1/alert-rules/${r.id}`);
          this.navigate("/?view=admin&tab=alerts", { force: true });
        } catch (e) { showError(error, e); }
      });
      const toggle = h("button", { type: "button", class: "small", "aria-label": `${r.is_active ? "Pause" : "Resume"} ${r.name}` }, r.is_active ? "Pause" : "Resume");
      toggle.addEventListener("click", async () => {
        try {
          await patch(`/api/v1/alert-rules/${r.id}`, { is_active: !r.is_active });
          this.navigate("/?view=admin&tab=alerts", { force: true });
        } catch (e) { showError(error, e); }
      });
      return h("tr", {}, h("td", {}, r.name), h("td", {}, r.source_id ? this.sourceName(r.source_id) : "every source"),
        h("td", {}, `≥ ${r.min_level}`), h("td", {}, r.query || "—"), h("td", {}, `${r.threshold} in ${r.window_seconds} s`),
        h("td", {}, r.is_active ? "active" : "paused"), h("td", {}, toggle, " ", remove));
    });
    const form = h("form", { class: "card form-grid" }, h("h2", {}, "New alert rule"),
      h("label", {}, "Name ", h("input", { name: "name", required: true })),
      h("label", {}, "Source ", h("select", { name: "source" }, h("option", { value: "" }, "every source"), this.sources.map((s) => h("option", { value: String(s.id) }, s.name)))),
      h("label", {}, "Level at least ", h("select", { name: "min_level" }, ["ERROR", "FATAL", "WARN", "INFO", "DEBUG"].map((l) => h("option", { value: l }, l)))),
      h("label", {}, "Words ", h("input", { name: "query" })),
      h("label", {}, "Threshold ", h("input", { name: "threshold", type: "number", min: "1", value: "10", required: true })),
      h("label", {}, "Window (s) ", h("input", { name: "window_seconds", type: "number", min: "1", value: "300", required: true })),
      h("button", { type: "submit", class: "primary" }, "Create rule"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const d = Object.fromEntries(new FormData(form));
      try {
        await post("/api/v1/alert-rules", { name: d.name, source: d.source ? Number(d.source) : null, min_level: d.min_level,
          query: d.query, threshold: Number(d.threshold), window_seconds: Number(d.window_seconds) });
        this.navigate("/?view=admin&tab=alerts", { force: true });
      } catch (e) { showError(error, e); }
    });
    body.append(h("section", {}, h("h2", {}, "Alert rules"),
      h("p", { class: "note" }, "Threshold rules on matching entries, in short. Every kind with its preview, the alerts' states, silences and channels: ",
        h("a", { href: "/?view=alerts", onclick: (event) => { event.preventDefault(); this.navigate("/?view=alerts"); } }, "Alerts"), "."),
      error, table(["name", "source", "level", "words", "fires at", "state", ""], rows)), form);
  }
}
