// Small DOM helpers: elements from data (text is always text, never HTML), form errors next to
// their fields, and media fetched with the key when it scrolls into view.
import { ApiError, blob } from "./api.js";

/** h("a", {href: "#/"}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    // through the CSSOM: the page's CSP refuses style="" attributes
    else if (name === "style") Object.assign(node.style, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let fieldIds = 0;
/** A labelled field with an error slot the control describes itself by (aria-describedby). */
export function field(labelText, control, hint) {
  const id = control.id || "f" + ++fieldIds;
  control.id = id;
  const error = h("div", { class: "error", id: id + "-error", role: "alert" });
  const hintNode = hint ? h("div", { class: "muted", id: id + "-hint" }, hint) : null;
  control.setAttribute("aria-describedby", [hintNode && id + "-hint", id + "-error"].filter(Boolean).join(" "));
  const wrap = h("div", { class: "field", "data-field": control.name || "" }, h("label", { for: id }, labelText), control, hintNode, error);
  return wrap;
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll(".error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

// Which field an API error is about: by its type, else by the "field: ..." prefix of validation messages.
const FIELD_BY_TYPE = {
  DuplicateEntityError: "name", InvalidNameError: "name", ImageError: "images", ImageTooLargeError: "images",
  UploadTooLargeError: "images", PixelBudgetError: "images", PayloadTooLargeError: "images", ConsentError: "consent",
  ArchiveError: "archive",
};

/** Show an ApiError next to the field it concerns (else in the form's own slot); returns the field's name. */
export function showError(form, error, fallback = "form") {
  const type = error instanceof ApiError ? error.type : "Error";
  const message = error instanceof ApiError ? `${type}: ${error.message}` : String(error.message || error);
  const prefix = /^([a-z_]+)[.:]/.exec(error.message || "");
  const byType = FIELD_BY_TYPE[type] || (/Image/.test(type) ? "images" : null);
  const names = [byType, prefix && prefix[1], fallback];
  for (const name of names) {
    const slot = name && form.querySelector(`[data-field="${name}"] .error`);
    if (slot) {
      slot.textContent = message;
      const control = form.querySelector(`[data-field="${name}"] [name]`);
      if (control) control.setAttribute("aria-invalid", "true");
      return name;
    }
  }
  return null;
}

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    observer.unobserve(entry.target);
    resolveMedia(entry.target);
  }
}, { rootMargin: "200px" });

async function resolveMedia(node) {
  for (const [from, to] of [["data-src", "src"], ["data-poster", "poster"], ["data-href", "href"]]) {
    const url = node.getAttribute(from);
    if (!url) continue;
    try {
      node.setAttribute(to, URL.createObjectURL(await blob(url)));
      node.removeAttribute(from);
      if (to === "href" && !node.hasAttribute("download")) node.setAttribute("download", url.split("/").slice(-3).join("_") + ".mp4");
    } catch (e) {
      node.setAttribute("data-error", e.message);
    }
  }
  node.dispatchEvent(new Event("media-ready"));
}

/** Fetch every data-src/data-poster/data-href under `root` with the key, once it nears the viewport. */
export function lazyMedia(root) {
  for (const node of root.querySelectorAll("[data-src],[data-poster],[data-href]")) observer.observe(node);
}

/** An <img> whose bytes are fetched with the key when it scrolls into view. */
export function authImg(url, alt, attrs = {}) {
  const img = h("img", { alt, "data-src": url, loading: "lazy", ...attrs });
  observer.observe(img);
  return img;
}

export const thumbUrl = (library, refId, size = 192) =>
  `/libraries/${encodeURIComponent(library)}/references/${encodeURIComponent(refId)}/thumbnail?size=${size}`;
export const imageUrl = (library, refId) =>
  `/libraries/${encodeURIComponent(library)}/references/${encodeURIComponent(refId)}/image`;

export function say(text, kind = "") {
  const status = document.getElementById("status");
  status.className = "status " + kind;
  status.textContent = text;
}
