// One entity: its facts, eras and every reference (registered and harvested keyframes, with their
// story and shot), face boxes drawn on the images; edit, rename, remove, add images by drag and drop.
import { get, lib, part, request, upload } from "../api.js";
import { authImg, clearErrors, field, h, imageUrl, say, showError, thumbUrl } from "../dom.js";
import { href } from "../route.js";
import { dropZone, progressRows, spreadProgress } from "../upload.js";

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
const consentText = (c) => (c === true ? "yes" : c === false ? "no" : "not recorded");

function facts(entity, eras) {
  const r = entity.rights || {};
  const rows = [
    ["Kind", entity.kind], ["Aliases", entity.aliases.join(", ") || "–"], ["Description", entity.description || "–"],
    ["Tags", entity.tags.join(", ") || "–"], ["Rights owner", r.owner || "–"], ["Licence", r.license || "–"],
    ["Consent", consentText(r.consent)], ["Rights expire", r.expires || "–"], ["Eras", eras.join(", ") || "–"],
  ];
  return h("dl", { class: "facts card", id: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function faceBox(ref) {
  const box = ref.face_box;
  if (!box || box.length < 4 || !ref.width || !ref.height) return null;
  const [x0, y0, x1, y1] = box;
  const pct = (v, total) => `${(100 * v) / total}%`;
  return h("div", { class: "facebox", role: "img", "aria-label": "detected face",
    style: { left: pct(x0, ref.width), top: pct(y0, ref.height), width: pct(x1 - x0, ref.width), height: pct(y1 - y0, ref.height) } });
}

function referenceCard(library, entity, ref) {
  const where = ref.source === "registered"
    ? `registered · era ${ref.era}`
    : `${ref.source} keyframe · story ${ref.story} · shot ${(ref.shot ?? 0) + 1} · frame ${ref.frame}`;
  const alt = `${entity.name}: ${where}`;
  const img = authImg(thumbUrl(library, ref.id, 384), alt);
  return h("li", { class: "ref", "data-source": ref.source },
    h("figure", {},
      h("div", { class: "frame" }, img, faceBox(ref)),
      h("figcaption", {}, where, ref.view ? ` · view ${ref.view}` : "", ref.original_name ? ` · ${ref.original_name}` : "", ` · ${ref.width}×${ref.height}`, ref.face_box ? " · face found" : "",
        " · ", h("a", { "data-href": imageUrl(library, ref.id), href: "#", onclick: openFull }, "full image"))));
}

async function openFull(e) {
  const link = e.currentTarget;
  if (!link.getAttribute("data-href")) return;
  e.preventDefault();
  const { blob } = await import("../api.js");
  window.open(URL.createObjectURL(await blob(link.getAttribute("data-href"))), "_blank", "noopener");
}

function editForm(library, entity, done) {
  const r = entity.rights || {};
  const description = h("textarea", { name: "description" }, entity.description || "");
  const aliases = h("input", { type: "text", name: "aliases", value: entity.aliases.join(", ") });
  const tags = h("input", { type: "text", name: "tags", value: entity.tags.join(", ") });
  const owner = h("input", { type: "text", name: "owner", value: r.owner || "" });
  const license = h("input", { type: "text", name: "license", value: r.license || "" });
  const consent = h("select", { name: "consent" }, h("option", { value: "" }, "not recorded"),
    h("option", { value: "yes", selected: r.consent === true }, "yes"), h("option", { value: "no", selected: r.consent === false }, "no"));
  const expires = h("input", { type: "date", name: "expires", value: (r.expires || "").slice(0, 10) });
  const form = h("form", { class: "card", "aria-labelledby": "edit-title" },
    h("h2", { id: "edit-title" }, "Edit"),
    field("Description", description),
    h("div", { class: "row" }, field("Aliases", aliases, "comma-separated"), field("Tags", tags, "comma-separated")),
    h("div", { class: "row" }, field("Rights owner", owner), field("Licence", license), field("Consent", consent), field("Rights expire", expires)),
    h("div", { "data-field": "form" }, h("div", { class: "error", role: "alert" })),
    h("button", { type: "submit" }, "Save changes"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = {
      description: description.value, aliases: list(aliases.value), tags: list(tags.value),
      rights: { owner: owner.value || null, license: license.value || null,
        consent: consent.value === "" ? null : consent.value === "yes", expires: expires.value || null },
    };
    try {
      await request("PATCH", `${lib(library)}/entities/${part(entity.name)}`, body);
      say("Saved.", "ok");
      done(entity.name);
    } catch (error) {
      // "rights.owner: ..." -> the owner field
      error.message = (error.message || "").replace(/^rights\./, "");
      showError(form, error);
    }
  });
  return form;
}

function renameForm(library, entity) {
  const input = h("input", { type: "text", name: "new_name", value: entity.name, required: true });
  const keep = h("input", { type: "checkbox", name: "keep_alias", checked: true, id: "keep-alias" });
  const form = h("form", { class: "card", "aria-labelledby": "rename-title" },
    h("h2", { id: "rename-title" }, "Rename"),
    field("New name", input),
    h("p", {}, keep, " ", h("label", { for: "keep-alias", class: "inline" }, "Keep the old name as an alias")),
    h("div", { "data-field": "form" }, h("div", { class: "error", role: "alert" })),
    h("button", { type: "submit" }, "Rename"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    try {
      const renamed = await request("POST", `${lib(library)}/entities/${part(entity.name)}/rename`, { new_name: input.value.trim(), keep_alias: keep.checked });
      say(`Renamed to ${renamed.name}.`, "ok");
      location.hash = href("entity", library, renamed.name);
    } catch (error) {
      showError(form, error, "new_name");
    }
  });
  return form;
}

function addImages(library, entity, done) {
  const era = h("input", { type: "text", name: "era", value: "default" });
  const rowsHost = h("div");
  const section = h("section", { class: "card", "aria-labelledby": "add-title" }, h("h2", { id: "add-title" }, "Add reference images"));
  const { zone } = dropZone("Images to add", async (files) => {
    const { list: rowsList, rows } = progressRows(files);
    rowsHost.replaceChildren(rowsList);
    let added = 0;
    // one request per file: each bar is its own upload, and a bad file is refused alone, whole
    await Promise.all(rows.map(async (row) => {
      const form = new FormData();
      form.append("images", row.file);
      form.append("era", era.value || "default");
      try {
        const result = await upload(`${lib(library)}/entities/${part(entity.name)}/images`, form, spreadProgress([row]));
        row.bar.value = 100;
        row.status.textContent = result.added ? "added" : "already there";
        row.status.className = "ok";
        added += result.added;
      } catch (error) {
        row.status.textContent = `${error.type}: ${error.message}`;
        row.status.className = "error";
        row.bar.value = 0;
      }
    }));
    if (added) done(entity.name, rowsHost);
  });
  section.append(field("Era of these images", era), zone, rowsHost);
  return section;
}

export async function entityPage(main, [library, name]) {
  const entity = await get(`${lib(library)}/entities/${part(name)}`);
  const refs = entity.references || [];
  const eras = [...new Set(refs.filter((r) => r.source === "registered").map((r) => r.era))];
  const registered = refs.filter((r) => r.source === "registered");
  const harvested = refs.filter((r) => r.source !== "registered");
  const reload = (current, keep) => entityPage(main, [library, current]).then(() => keep && main.querySelector("#add-title")?.parentNode.append(keep));
  const remove = h("button", { type: "button", class: "danger", onclick: async () => {
    if (!confirm(`Remove ${entity.name} with its ${refs.length} references? This cannot be undone.`)) return;
    try {
      await request("DELETE", `${lib(library)}/entities/${part(entity.name)}`);
      say(`Removed ${entity.name}.`, "ok");
      location.hash = href("lib", library);
    } catch (error) { say(`${error.type}: ${error.message}`, "error"); }
  } }, `Remove ${entity.name}`);
  main.replaceChildren(
    h("p", {}, h("a", { href: href("lib", library) }, `← Entities of ${library}`)),
    h("h1", {}, entity.name),
    facts(entity, eras),
    h("h2", { id: "registered" }, `Registered references (${registered.length})`),
    h("ul", { class: "refs", "aria-labelledby": "registered" }, registered.map((r) => referenceCard(library, entity, r))),
    h("h2", { id: "harvested" }, `Keyframes from story runs (${harvested.length})`),
    harvested.length ? h("ul", { class: "refs", "aria-labelledby": "harvested" }, harvested.map((r) => referenceCard(library, entity, r))) : h("p", { class: "muted" }, "none yet"),
    addImages(library, entity, reload),
    h("div", { class: "cols" }, editForm(library, entity, reload), renameForm(library, entity)),
    h("p", {}, remove),
  );
  return `${entity.name} · ${library}`;
}
