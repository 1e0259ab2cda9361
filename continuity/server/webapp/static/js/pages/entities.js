// The entity grid: one page of 48 at a time (the server pages and filters), thumbnails fetched
// only as they scroll into view, so a library of thousands stays light.
import { get, lib } from "../api.js";
import { authImg, field, h } from "../dom.js";
import { href } from "../route.js";

const PAGE = 48;
const KINDS = ["character", "location", "prop", "style"];

function options(counts, chosen, allText) {
  return [h("option", { value: "" }, allText),
    ...Object.keys(counts).sort().map((k) => h("option", { value: k, selected: k === chosen }, `${k} (${counts[k]})`))];
}

function tile(library, entity) {
  const thumb = entity.thumbnail_url
    ? authImg(entity.thumbnail_url, `${entity.name}, first reference`, { width: 192, height: 192 })
    : h("span", { class: "muted" }, "no image");
  return h("li", { class: "tile" },
    h("a", { href: href("entity", library, entity.name) },
      h("div", { class: "thumb" }, thumb),
      h("div", { class: "meta" }, h("div", { class: "name" }, entity.name),
        h("div", { class: "muted" }, entity.kind), ...entity.tags.map((t) => h("span", { class: "tag" }, t)))),
  );
}

export async function entityGrid(main, [library], query) {
  const page = Math.max(0, parseInt(query.get("page") || "0", 10) || 0);
  const filters = { kind: query.get("kind") || "", tag: query.get("tag") || "", q: query.get("q") || "" };
  const params = new URLSearchParams({ offset: page * PAGE, limit: PAGE });
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
  let data;
  try {
    data = await get(`${lib(library)}/gallery?${params}`);
  } catch (error) {
    if (error.type !== "NotFoundError") throw error;
    // a library exists once it holds an entity: an empty one is a place to start, not an error
    main.replaceChildren(h("h1", {}, `Entities of ${library}`), h("p", {}, `No entities in ${library} yet. `,
      h("a", { href: href("register", library) }, "Register the first one"), "."));
    return `Entities · ${library}`;
  }

  const go = (changes) => {
    const next = new URLSearchParams({ ...filters, page: 0, ...changes });
    for (const [k, v] of [...next]) if (!v || v === "0") next.delete(k);
    location.hash = href("lib", library) + (next.toString() ? "?" + next : "");
  };
  const search = h("input", { type: "search", name: "q", value: filters.q, placeholder: "name or alias" });
  const kinds = Object.fromEntries(KINDS.map((k) => [k, data.kinds[k] || 0]));
  const kind = h("select", { name: "kind" }, options(kinds, filters.kind, "all kinds"));
  const tag = h("select", { name: "tag" }, options(data.tags, filters.tag, "all tags"));
  const form = h("form", { class: "row card", role: "search", "aria-label": "Filter entities" },
    field("Search by name", search), field("Kind", kind), field("Tag", tag),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Filter")));
  form.addEventListener("submit", (e) => { e.preventDefault(); go({ q: search.value.trim(), kind: kind.value, tag: tag.value }); });
  kind.addEventListener("change", () => form.requestSubmit());
  tag.addEventListener("change", () => form.requestSubmit());

  const first = data.total ? page * PAGE + 1 : 0;
  const last = Math.min(data.total, (page + 1) * PAGE);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => go({ ...filters, page: page - 1 }) }, "Previous"),
    h("span", { "aria-live": "polite" }, `${first}–${last} of ${data.total}`),
    h("button", { type: "button", class: "secondary", disabled: last >= data.total, onclick: () => go({ ...filters, page: page + 1 }) }, "Next"));
  main.replaceChildren(
    h("h1", {}, `Entities of ${library}`),
    form,
    h("p", {}, h("a", { class: "button", href: href("register", library) }, "Register an entity")),
    data.entities.length
      ? h("ul", { class: "grid", "aria-label": "Entities", id: "entity-grid" }, data.entities.map((e) => tile(library, e)))
      : h("p", { class: "muted" }, "No entity matches."),
    pager,
  );
  return `Entities · ${library}`;
}
