// Notification channels (admins: a webhook makes the server send requests where it is
// told). Each kind asks for what it needs; a webhook's secret and a chat webhook's URL
// are credentials, and the API never shows them again.

import { del, get, post } from "./api.js";
import { clear, h } from "./dom.js";
import { armedButton, clearFieldErrors, errorBox, field, shortTime, showError, showFieldErrors, table } from "./alert_common.js";

const KINDS = [
  ["webhook", "Webhook (JSON, signed)"],
  ["email", "Email"],
  ["slack", "Slack incoming webhook"],
  ["teams", "Microsoft Teams incoming webhook"],
];

export class ChannelsTab {
  constructor(root, { navigate }) {
    this.root = root;
    this.navigate = navigate;
  }

  async render() {
    const channels = await get("/api/v1/alert-channels");
    const error = errorBox();
    const rows = channels.map((c) => h("tr", { dataset: { channelId: String(c.id) } },
      h("td", {}, c.name), h("td", {}, c.kind),
      h("td", { class: "destination" }, c.kind === "email" ? c.to.join(", ") : c.url),
      h("td", {}, c.kind === "webhook" ? (c.has_secret ? "signed (secret kept, never shown)" : "unsigned") : c.kind === "email" ? "—" : "URL kept, shown by host only"),
      h("td", {}, shortTime(c.created_at)),
      h("td", {}, armedButton("Delete", "Click again to delete", { "aria-label": `Delete channel ${c.name}` }, async () => {
        try {
          await del(`/api/v1/alert-channels/${c.id}`);
          this.navigate("/?view=alerts&tab=channels", { force: true });
        } catch (e) { showError(error, e); }
      }))));
    clear(this.root).append(h("section", {}, h("h2", {}, "Channels"),
      h("p", { class: "note" }, "Rules notify these. Deleting one removes it from its rules and drops its undelivered notifications."),
      error,
      rows.length ? table(["name", "kind", "sends to", "credentials", "created", ""], rows, { id: "channel-list" }) : h("p", { class: "muted", id: "channel-list" }, "No channels yet.")),
    this.form());
  }

  form() {
    const name = h("input", { name: "name", maxlength: "100", required: true, autocomplete: "off" });
    const kind = h("select", { name: "kind" }, KINDS.map(([v, label]) => h("option", { value: v }, label)));
    const url = h("input", { name: "url", type: "url", maxlength: "2048", autocomplete: "off", placeholder: "https://…" });
    const to = h("input", { name: "to", autocomplete: "off", placeholder: "oncall@example.com, ops@example.com" });
    const secret = h("input", { name: "secret", type: "password", maxlength: "256", autocomplete: "new-password" });
    const general = errorBox();
    const done = h("p", { class: "ok", role: "status", hidden: true });
    const part = (kinds, child) => h("div", { class: "kind-part", dataset: { kinds } }, child);
    const form = h("form", { class: "card silence-form channel-form", novalidate: true, autocomplete: "off" },
      h("h2", {}, "New channel"),
      field("name", "Name", name), field("kind", "Kind", kind),
      part("webhook slack teams", field("url", "URL", url, "Slack and Teams: the incoming webhook's https URL (a credential: not shown again)")),
      part("email", field("to", "To", to, "addresses, separated by commas")),
      part("webhook", field("secret", "Signing secret", secret, "16+ characters; the receiver checks X-Logkeep-Signature with it")),
      h("div", { class: "form-end" }, h("button", { type: "submit", class: "primary" }, "Create channel"), general, done));
    const showKind = () => {
      for (const p of form.querySelectorAll(".kind-part")) {
        const on = p.dataset.kinds.split(" ").includes(kind.value);
        p.hidden = !on;
        for (const input of p.querySelectorAll("input")) input.disabled = !on;
      }
    };
    kind.addEventListener("change", showKind);
    showKind();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      const body = { name: name.value.trim(), kind: kind.value };
      if (kind.value === "email") body.to = to.value.split(",").map((a) => a.trim()).filter(Boolean);
      else body.url = url.value.trim();
      if (kind.value === "webhook") body.secret = secret.value;
      try {
        await post("/api/v1/alert-channels", body);
        secret.value = "";
        this.navigate("/?view=alerts&tab=channels", { force: true });
      } catch (e) {
        showFieldErrors(form, general, e);
      }
    });
    return form;
  }
}
