// The public JSON API, called with the signed-in key.
//
// The key lives in this tab's sessionStorage only: it is sent in the Authorization
// header, never put in a URL or a cookie, and is gone when the tab closes.

const KEY = "codepool.key";
const PROJECT = "codepool.project";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  get project() {
    const raw = sessionStorage.getItem(PROJECT);
    return raw ? JSON.parse(raw) : null;
  },
  signIn(key) { sessionStorage.setItem(KEY, key); },
  setProject(project) {
    if (project) sessionStorage.setItem(PROJECT, JSON.stringify(project));
    else sessionStorage.removeItem(PROJECT);
  },
  signOut() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(PROJECT); },
};

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.details = error.details || {};
  }
}

const enc = encodeURIComponent;

/** "/v1/projects/<current project>" + the path parts, each URL-encoded. */
export function projectPath(...parts) {
  const project = session.project;
  return ["/v1/projects", enc(project.id), ...parts.map((p) => enc(String(p)))].join("/");
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: "bad_response", message: text.slice(0, 200) } };
  }
}

/** Call the API; answers the decoded JSON (null for 204), throws ApiError otherwise. */
export async function api(method, path, { body, query, key } = {}) {
  const headers = { Authorization: `Bearer ${key || session.key}` };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(withQuery(path, query), init);
  const data = await parse(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/**
 * POST codes: ``body`` is a string (pasted) or a File (sent from disk as it is read:
 * the browser streams it; the page never holds its content). XHR rather than fetch,
 * for its upload progress events. An Idempotency-Key makes a retried upload safe.
 */
export function uploadCodes(path, body, contentType, query, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", withQuery(path, query));
    xhr.setRequestHeader("Authorization", `Bearer ${session.key}`);
    xhr.setRequestHeader("Content-Type", contentType);
    xhr.setRequestHeader("Idempotency-Key", crypto.randomUUID());
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { error: { code: "network_error", message: "the upload did not reach the server" } })));
    xhr.addEventListener("abort", () => reject(new ApiError(0, { error: { code: "aborted", message: "upload cancelled" } })));
    xhr.send(body);
  });
}

/**
 * Save an API answer (the CSV export) as a file. The export needs the bearer, so a
 * plain link cannot fetch it: fetch it, then hand the browser the Blob to save.
 */
export async function download(path, query, filename) {
  const response = await fetch(withQuery(path, query), {
    headers: { Authorization: `Bearer ${session.key}` }, credentials: "omit", cache: "no-store",
  });
  if (!response.ok) throw new ApiError(response.status, await parse(response));
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
