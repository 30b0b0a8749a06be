// Saved searches (analysts and admins): the current search's parameters under a name.

import { del, get, post } from "./api.js";
import { $, clear, h } from "./dom.js";
import { searchPairs } from "./state.js";

function paramsOf(state) {
  const params = {};
  for (const [k, v] of searchPairs(state)) {
    if (k in params) params[k] = [].concat(params[k], v);
    else params[k] = v;
  }
  return params;
}

function urlOf(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const x of [].concat(v)) p.append(k, x);
  return `/?${p}`;
}

export class SavedSearches {
  constructor({ getState, navigate }) {
    this.getState = getState;
    this.navigate = navigate;
    $("saved-menu").hidden = false;
    $("saved-menu").addEventListener("toggle", () => { if ($("saved-menu").open) this.refresh(); });
    $("save-form").addEventListener("submit", (event) => this.save(event));
  }

  error(message) {
    $("saved-error").hidden = !message;
    $("saved-error").textContent = message || "";
  }

  async refresh() {
    const list = clear($("saved-list"));
    try {
      const saved = await get("/api/v1/saved-searches");
      if (!saved.length) list.append(h("li", { class: "muted" }, "No saved searches yet"));
      for (const s of saved) {
        const link = h("a", { href: urlOf(s.params) }, s.name);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          $("saved-menu").open = false;
          this.navigate(urlOf(s.params));
        });
        const remove = h("button", { type: "button", class: "tiny", "aria-label": `Delete saved search ${s.name}` }, "delete");
        remove.addEventListener("click", async () => {
          try {
            await del(`/api/v1/saved-searches/${s.id}`);
            this.refresh();
          } catch (error) {
            this.error(error.message);
          }
        });
        list.append(h("li", {}, link, " ", remove));
      }
      this.error(null);
    } catch (error) {
      this.error(error.message);
    }
  }

  async save(event) {
    event.preventDefault();
    const form = event.target;
    try {
      await post("/api/v1/saved-searches", { name: form.querySelector("input[name=name]").value.trim(), params: paramsOf(this.getState()) });
      form.reset();
      this.refresh();
    } catch (error) {
      this.error(error.message);
    }
  }
}
