// The one way the explorer talks to logkeep: same-origin fetch, the session cookie sent
// by the browser, the CSRF token on every write, and errors read in the API's format —
// RFC 9457 problem details ({type, title, status, detail, errors?}) or the older
// {"detail": "..." | [{loc, msg}]} — into one ApiError with a human message.

let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token || null;
}

export class ApiError extends Error {
  constructor(status, message, fields = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fields = fields; // [{where, message}] for invalid input
  }
}

function fieldErrors(list) {
  if (!Array.isArray(list)) return [];
  return list.map((e) => {
    if (typeof e === "string") return { where: "", message: e };
    // The first part of a location says where the field was sent (the body, the query
    // string, a path); only the rest names the field, which may itself be called "query".
    const parts = Array.isArray(e.loc) ? e.loc.map(String) : [];
    if (["body", "query", "path", "header"].includes(parts[0])) parts.shift();
    const loc = Array.isArray(e.loc) ? parts.join(".") : (e.pointer || e.field || e.name || "");
    return { where: String(loc || ""), message: String(e.msg || e.message || e.detail || "") };
  });
}

export function errorFromBody(status, body) {
  const fallback = `The server answered ${status}`;
  if (!body || typeof body !== "object") return new ApiError(status, typeof body === "string" && body ? body.slice(0, 500) : fallback);
  const fields = fieldErrors(body.errors || (Array.isArray(body.detail) ? body.detail : []));
  let message = typeof body.detail === "string" ? body.detail : (body.title || "");
  if (!message && fields.length) message = fields.map((f) => (f.where ? `${f.where}: ${f.message}` : f.message)).join("; ");
  return new ApiError(status, message || fallback, fields);
}

// A query string from an object; arrays repeat their name.
export function queryString(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function request(path, { method = "GET", params, body, headers = {}, signal, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin", signal };
  if (method !== "GET" && method !== "HEAD" && csrfToken) init.headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path + queryString(params), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "logkeep cannot be reached: check the connection and try again");
  }
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const isJson = type.includes("json");
  const payload = isJson ? await response.json().catch(() => null) : await response.text().catch(() => "");
  if (!response.ok) {
    const error = errorFromBody(response.status, payload);
    const retry = response.headers.get("retry-after");
    if (retry && response.status >= 500) error.message += ` (retry in ${retry} s)`;
    throw error;
  }
  return payload;
}

export const get = (path, params, opts = {}) => request(path, { ...opts, params });
export const post = (path, body, opts = {}) => request(path, { ...opts, method: "POST", body });
export const patch = (path, body) => request(path, { method: "PATCH", body });
export const del = (path, body) => request(path, { method: "DELETE", body });
