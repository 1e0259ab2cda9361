// The JSON API with the signed-in key. The key lives in this tab's sessionStorage only
// (the same slot as /docs): closing the tab forgets it, and no cookie carries it.
const KEY_SLOT = "continuity.api_key";

export const key = () => sessionStorage.getItem(KEY_SLOT) || "";
export const setKey = (value) => sessionStorage.setItem(KEY_SLOT, value.trim());
export const forgetKey = () => sessionStorage.removeItem(KEY_SLOT);
const authHeaders = () => (key() ? { Authorization: "Bearer " + key() } : {});

/** A typed API error: `type` is the server's error class (InvalidInputError, ImageError, ...). */
export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function errorOf(response) {
  const body = await response.json().catch(() => ({}));
  return new ApiError(response.status, body.error || "HTTPError", body.message || response.statusText);
}

export const lib = (name) => "/libraries/" + encodeURIComponent(name);
export const part = (text) => encodeURIComponent(text);

/** GET/POST/PATCH/DELETE with JSON; resolves to the parsed body, rejects with an ApiError. */
export async function request(method, path, body) {
  const headers = authHeaders();
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path) => request("GET", path);

/** The bytes at `path` as a blob (images, videos, archives need the key too). */
export async function blob(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw await errorOf(response);
  return response.blob();
}

/**
 * POST a multipart form with upload progress: `onProgress(loaded, total)` as bytes leave.
 * One request, so the server takes all of it or none of it.
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { body = {}; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body.error || "HTTPError", body.message || xhr.statusText));
    };
    xhr.onerror = () => reject(new ApiError(0, "NetworkError", "the server could not be reached; is it running?"));
    xhr.send(form);
  });
}
