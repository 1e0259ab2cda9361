import { get } from "../api.js";
import { h } from "../dom.js";
import { href } from "../route.js";

export async function libraries(main) {
  const data = await get("/libraries");
  const rows = data.libraries.map((l) =>
    h("tr", {},
      h("th", { scope: "row" }, h("a", { href: href("lib", l.name) }, l.name)),
      h("td", {}, l.entities), h("td", {}, l.references),
      h("td", {}, h("a", { href: href("runs", l.name) }, "story runs"), " · ", h("a", { href: href("query", l.name) }, "query")),
    ),
  );
  main.replaceChildren(
    h("h1", {}, "Libraries"),
    rows.length
      ? h("table", { class: "card" }, h("caption", { class: "muted" }, "Libraries this key reaches"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Library"), h("th", { scope: "col" }, "Entities"), h("th", { scope: "col" }, "References"), h("th", { scope: "col" }, "Open"))),
          h("tbody", {}, rows))
      : h("p", {}, "No libraries yet. ", h("a", { href: href("register", "default") }, "Register the first entity"), " in library ‘default’."),
  );
  return "Libraries";
}
