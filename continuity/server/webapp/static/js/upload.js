// Drag-and-drop (or chosen) files with one progress bar each.
import { h } from "./dom.js";

const IMAGE_TYPES = "image/jpeg,image/png,image/webp,image/bmp,image/gif,image/tiff";

/** A drop zone with a file input; `onFiles(files)` gets every dropped or chosen batch. */
export function dropZone(labelText, onFiles, name = "images") {
  const input = h("input", { type: "file", name, multiple: true, accept: IMAGE_TYPES, id: "drop-" + name });
  const zone = h("div", { class: "drop", "data-field": name },
    h("label", { for: input.id }, labelText),
    h("p", { class: "muted" }, "Drop image files here, or choose them (several at once)."),
    input, h("div", { class: "error", id: input.id + "-error", role: "alert" }));
  input.setAttribute("aria-describedby", input.id + "-error");
  input.addEventListener("change", () => input.files.length && onFiles([...input.files]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = [...e.dataTransfer.files];
    if (files.length) onFiles(files);
  });
  return { zone, input };
}

/** One row per file: name, a progress bar and a status slot (its error or "added"). */
export function progressRows(files) {
  const rows = files.map((file) => {
    const bar = h("progress", { max: 100, value: 0, "aria-label": `upload of ${file.name}` });
    const status = h("span", { class: "muted", role: "status" }, "waiting");
    return { file, bar, status, node: h("li", {}, h("span", {}, file.name), bar, status) };
  });
  return { list: h("ul", { class: "uploads", "aria-label": "Uploads" }, rows.map((r) => r.node)), rows };
}

/** Per-file progress of one request carrying `rows`' files in order, from its bytes sent. */
export function spreadProgress(rows) {
  return (loaded) => {
    let start = 0;
    for (const row of rows) {
      const done = Math.max(0, Math.min(row.file.size, loaded - start));
      row.bar.value = row.file.size ? Math.round((100 * done) / row.file.size) : 100;
      row.status.textContent = row.bar.value >= 100 ? "sent" : "sending";
      start += row.file.size;
    }
  };
}
