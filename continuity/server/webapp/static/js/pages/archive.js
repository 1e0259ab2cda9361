// Export a library (download) and import an archive (upload) into it.
import { blob, lib, upload } from "../api.js";
import { clearErrors, field, h, say, showError } from "../dom.js";
import { progressRows, spreadProgress } from "../upload.js";

export async function archivePage(main, [library]) {
  const exportError = h("div", { class: "error", role: "alert", id: "export-error" });
  const exportButton = h("button", { type: "button", id: "export", "aria-describedby": "export-error" }, `Export ${library}`);
  exportButton.addEventListener("click", async () => {
    exportError.textContent = "";
    exportButton.disabled = true;
    try {
      const data = await blob(`${lib(library)}/export`);
      const link = h("a", { href: URL.createObjectURL(data), download: `${library}.continuity` });
      document.body.append(link);
      link.click();
      link.remove();
      say(`Exported ${library} (${data.size} bytes).`, "ok");
    } catch (error) {
      exportError.textContent = `${error.type}: ${error.message}`;
    } finally {
      exportButton.disabled = false;
    }
  });

  const file = h("input", { type: "file", name: "archive", accept: ".continuity,application/zip", required: true });
  const rowsHost = h("div");
  const result = h("div", { role: "status" });
  const form = h("form", { class: "card", "aria-labelledby": "import-title" },
    h("h2", { id: "import-title" }, `Import an archive into ${library}`),
    field("Archive file", file, "A .continuity file written by export; nothing is imported if any row is bad or a name exists here."),
    rowsHost, h("button", { type: "submit" }, "Import"), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (!file.files.length) return showError(form, { message: "archive: choose a file to import" }, "archive");
    const { list, rows } = progressRows([...file.files]);
    rowsHost.replaceChildren(list);
    const body = new FormData();
    body.append("archive", file.files[0]);
    try {
      const done = await upload(`${lib(library)}/import`, body, spreadProgress(rows));
      result.replaceChildren(h("p", { class: "ok" }, `Imported ${done.entities ?? 0} entities and ${done.references ?? 0} references into ${done.library}.`));
    } catch (error) {
      showError(form, error, "archive");
    }
  });
  main.replaceChildren(
    h("h1", {}, `Export and import · ${library}`),
    h("section", { class: "card", "aria-labelledby": "export-title" }, h("h2", { id: "export-title" }, "Export"),
      h("p", {}, "One file with every entity, image, vector and setting of the library (needs an admin key)."), exportButton, exportError),
    form,
  );
  return `Export / import · ${library}`;
}
