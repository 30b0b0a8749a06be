// The facets sidebar: top values of source, level and common metadata keys among the
// newest matches (GET /api/v1/logs/facets). A click includes a value; the "−" beside it
// excludes it (levels and sources by choosing the others, metadata with not.metadata.).

import { LEVELS, clear, h } from "./dom.js";

function include(field, value, state) {
  if (field.param === "source") return { source: [...new Set([...state.source, value.filter])] };
  if (field.param === "level") return { level: [value.filter], min_level: undefined };
  const key = field.param.slice("metadata.".length);
  const metadata = state.metadata.filter((m) => m.key !== key);
  return { metadata: [...metadata, { key, value: value.filter, not: false }] };
}

function exclude(field, value, state, sources) {
  if (field.param === "level") {
    const current = state.level.length ? state.level : LEVELS;
    return { level: current.filter((l) => l !== value.filter), min_level: undefined };
  }
  if (field.param === "source") {
    const current = state.source.length ? state.source : sources;
    return { source: current.filter((s) => s !== value.filter) };
  }
  const key = field.param.slice("metadata.".length);
  return { metadata: [...state.metadata, { key, value: value.filter, not: true }] };
}

export function renderFacets(box, facets, state, change) {
  clear(box);
  const sources = (facets.fields.find((f) => f.field === "source") || { values: [] }).values.map((v) => v.filter);
  box.append(h("p", { class: "note facet-note" },
    facets.complete ? `${facets.sample.toLocaleString()} matches` : `Newest ${facets.sample.toLocaleString()} matches`));
  for (const field of facets.fields) {
    if (!field.values.length) continue;
    const section = h("section", { class: "facet" }, h("h3", {}, field.field));
    const list = h("ul", { class: "plain" });
    for (const value of field.values) {
      const share = facets.sample ? Math.round((100 * value.count) / facets.sample) : 0;
      const label = value.value === null ? "null" : String(value.value);
      list.append(h("li", { class: "facet-value" },
        h("button", { type: "button", class: "facet-in", title: `Only ${field.param}=${value.filter}`,
          onclick: () => change(include(field, value, state)) },
          h("span", { class: `facet-label${field.field === "level" ? ` lvl-text-${label.toLowerCase()}` : ""}` }, label),
          h("span", { class: "facet-count" }, value.count.toLocaleString()),
          h("span", { class: "facet-bar", "aria-hidden": "true" }, h("i", { class: `w${Math.min(10, Math.ceil(share / 10))}` }))),
        h("button", { type: "button", class: "facet-out", "aria-label": `Exclude ${field.param}=${value.filter}`,
          title: `Leave out ${field.param}=${value.filter}`,
          onclick: () => change(exclude(field, value, state, sources)) }, "−")));
    }
    section.append(list);
    box.append(section);
  }
}
