// The explorer's entry point: who is signed in, which view the URL asks for, the theme,
// and the keyboard.

import { AdminView } from "./admin.js";
import { get, post, setCsrfToken } from "./api.js";
import { $, h, isTyping } from "./dom.js";
import { Detail } from "./detail.js";
import { SavedSearches } from "./saved.js";
import { ExploreView } from "./search.js";
import { pushState, readState } from "./state.js";

const THEMES = ["system", "light", "dark"];

function applyTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("theme").textContent = `Theme: ${theme}`;
}

function setupTheme(onChange) {
  let theme = localStorage.getItem("logkeep.theme") || "system";
  if (!THEMES.includes(theme)) theme = "system";
  applyTheme(theme);
  $("theme").addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem("logkeep.theme", theme); // a display preference, not a secret
    applyTheme(theme);
    onChange();
  });
}

class App {
  constructor(session) {
    this.session = session;
    this.explore = null;
    this.alerts = null; // the Alerts view, loaded when first opened
    this.admin = new AdminView($("admin-view"), { session, navigate: (url, opts) => this.navigate(url, opts) });
    this.detail = new Detail({
      getState: () => this.explore.state,
      onFilter: (term) => {
        this.detail.close();
        this.explore.setState({ metadata: [...this.explore.state.metadata.filter((m) => !(m.key === term.key && m.not === term.not && m.value === term.value)), term] });
      },
      onClose: () => {
        const state = readState();
        if (state.entry) pushState({ ...state, entry: undefined, entry_source: undefined, entry_at: undefined }, { replace: true });
      },
    });
  }

  start() {
    const s = this.session;
    $("views").hidden = false;
    $("nav-admin").hidden = !s.actions.includes("admin");
    $("nav-alerts").hidden = !s.actions.includes("saved_searches");
    $("alert-from-search").hidden = !s.actions.includes("saved_searches");
    $("who").textContent = s.kind === "anonymous" ? "dev (no sign-in)" : s.name;
    $("signout").hidden = s.kind !== "user";
    $("signout").addEventListener("click", () => this.signOut());
    for (const link of [$("brand"), $("nav-explore"), $("nav-alerts"), $("nav-admin"), $("alert-from-search")]) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        this.navigate(link.getAttribute("href"));
      });
    }
    this.explore = new ExploreView({ session: s, openEntry: (entry) => this.openEntry(entry) });
    if (s.actions.includes("saved_searches")) new SavedSearches({ getState: () => this.explore.state, navigate: (url) => this.navigate(url) });
    this.explore.loadSources();
    addEventListener("popstate", () => this.route(false));
    document.addEventListener("keydown", (event) => this.key(event));
    this.route(true);
  }

  navigate(url, { force = false } = {}) {
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    else if (!force) return;
    this.route(false);
  }

  route(first) {
    const state = readState();
    const admin = state.view === "admin";
    const alerts = state.view === "alerts";
    $("explore-view").hidden = admin || alerts;
    $("admin-view").hidden = !admin;
    $("alerts-view").hidden = !alerts;
    $("nav-explore").toggleAttribute("aria-current", !admin && !alerts);
    $("nav-admin").toggleAttribute("aria-current", admin);
    $("nav-alerts").toggleAttribute("aria-current", alerts);
    if (this.alerts && !alerts) this.alerts.hide();
    if (admin) {
      this.detail.close();
      this.admin.show(state.tab);
      return;
    }
    if (alerts) {
      this.detail.close();
      this.showAlerts();
      return;
    }
    this.explore.fromUrl();
    if (state.entry) this.openPermalink(state);
    else if (!first) this.detail.close();
  }

  async showAlerts() {
    if (!this.alerts) {
      let module;
      try {
        module = await import("./alerts.js");
      } catch (error) {
        $("alerts-view").replaceChildren(h("p", { class: "error banner", role: "alert" }, `The Alerts view cannot be loaded: ${error.message}`));
        return;
      }
      this.alerts ||= new module.AlertsView($("alerts-view"), { session: this.session, navigate: (url, opts) => this.navigate(url, opts) });
    }
    if (readState().view === "alerts") this.alerts.show();
  }

  async openPermalink(state) {
    try {
      const entry = await get(`/api/v1/logs/${encodeURIComponent(state.entry)}`, { source: state.entry_source, at: state.entry_at });
      this.detail.open(entry);
    } catch (error) {
      $("search-error").hidden = false;
      $("search-error").textContent = `The linked entry cannot be shown: ${error.message}`;
    }
  }

  openEntry(entry) {
    pushState({ ...this.explore.state, entry: String(entry.id), entry_source: String(entry.source_id), entry_at: entry.timestamp }, { replace: true });
    this.detail.open(entry);
  }

  async signOut() {
    try {
      await post("/api/v1/auth/web/logout");
    } finally {
      location.assign("/");
    }
  }

  key(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return; // the browser's own
    const help = $("help");
    if (event.key === "Escape") {
      if (help.open) return; // the dialog closes itself
      if (this.detail.isOpen) {
        event.preventDefault();
        this.detail.close();
      } else if (isTyping(event)) {
        event.target.blur();
      }
      return;
    }
    if (isTyping(event)) return;
    if ($("explore-view").hidden && event.key !== "?") return;
    switch (event.key) {
      case "/":
        event.preventDefault();
        $("q").focus();
        $("q").select();
        break;
      case "j":
        this.explore.select(1);
        break;
      case "k":
        this.explore.select(-1);
        break;
      case "Enter":
        if (document.activeElement && document.activeElement.closest("button, a, summary")) return;
        event.preventDefault();
        this.explore.openSelected();
        break;
      case "?":
        event.preventDefault();
        if (!help.open) help.showModal();
        break;
      default:
    }
  }
}

function showLogin() {
  $("login-view").hidden = false;
  const form = $("login-form");
  form.querySelector("input[name=username]").focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("login-error");
    error.hidden = true;
    const data = new FormData(form);
    try {
      await post("/api/v1/auth/web/login", { username: data.get("username"), password: data.get("password") });
      location.reload();
    } catch (e) {
      error.hidden = false;
      error.textContent = e.status === 401 ? "Wrong username or password." : e.message;
    }
  });
}

async function main() {
  setupTheme(() => {
    if (app && app.explore) app.explore.histogram.redraw();
    if (app && app.alerts) app.alerts.redraw();
  });
  $("help-button").addEventListener("click", () => $("help").showModal());
  let app = null;
  let session;
  try {
    session = await get("/api/v1/auth/web/session");
  } catch (error) {
    document.body.append(h("p", { class: "error banner", role: "alert" }, `logkeep cannot start: ${error.message}`));
    return;
  }
  if (!session.signed_in) {
    showLogin();
    return;
  }
  setCsrfToken(session.csrf_token);
  app = new App(session);
  app.start();
}

main();
