// Register an entity with its images in one request: all of it is stored, or none of it.
import { lib, upload } from "../api.js";
import { clearErrors, field, h, say, showError } from "../dom.js";
import { href } from "../route.js";
import { dropZone, progressRows, spreadProgress } from "../upload.js";

const KINDS = ["character", "location", "prop", "style"];

export async function registerPage(main, [library]) {
  let files = [];
  const name = h("input", { type: "text", name: "name", required: true, autocomplete: "off" });
  const kind = h("select", { name: "kind" }, KINDS.map((k) => h("option", { value: k }, k)));
  const description = h("textarea", { name: "description" });
  const aliases = h("input", { type: "text", name: "aliases" });
  const tags = h("input", { type: "text", name: "tags" });
  const era = h("input", { type: "text", name: "era", value: "default" });
  const owner = h("input", { type: "text", name: "rights_owner" });
  const consent = h("select", { name: "consent" }, h("option", { value: "" }, "not recorded"), h("option", { value: "yes" }, "yes"), h("option", { value: "no" }, "no"));
  const rowsHost = h("div");
  const { zone } = dropZone("Reference images", (chosen) => {
    files = chosen;
    rowsHost.replaceChildren(progressRows(files).list);
  });
  const submit = h("button", { type: "submit" }, "Register");
  const form = h("form", { class: "card", "aria-labelledby": "register-title", novalidate: true },
    h("div", { class: "row" }, field("Name", name), field("Kind", kind)),
    field("Description", description),
    h("div", { class: "row" }, field("Aliases", aliases, "comma-separated"), field("Tags", tags, "comma-separated"), field("Era", era)),
    h("div", { class: "row" }, field("Rights owner", owner), field("Consent", consent)),
    zone, rowsHost,
    h("div", { "data-field": "form" }, h("div", { class: "error", role: "alert" })),
    submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = new FormData();
    body.append("name", name.value.trim());
    body.append("kind", kind.value);
    body.append("description", description.value);
    body.append("era", era.value || "default");
    for (const a of aliases.value.split(",").map((s) => s.trim()).filter(Boolean)) body.append("aliases", a);
    for (const t of tags.value.split(",").map((s) => s.trim()).filter(Boolean)) body.append("tags", t);
    if (owner.value) body.append("rights_owner", owner.value);
    if (consent.value) body.append("consent", consent.value);
    for (const f of files) body.append("images", f);
    const { list: rowsList, rows } = progressRows(files);
    rowsHost.replaceChildren(rowsList);
    submit.disabled = true;
    try {
      const entity = await upload(`${lib(library)}/entities`, body, spreadProgress(rows));
      say(`Registered ${entity.name} with ${entity.references.length} references.`, "ok");
      location.hash = href("entity", library, entity.name);
    } catch (error) {
      for (const row of rows) { row.status.textContent = "not stored"; row.status.className = "error"; }
      showError(form, error);
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(h("h1", { id: "register-title" }, `Register an entity in ${library}`), form);
  return `Register · ${library}`;
}
