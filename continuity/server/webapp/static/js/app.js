// The web app's router: #/<page>/<library>/... -> one page module each. Pages render into <main>.
import { ApiError, forgetKey, key } from "./api.js";
import { href, parseHash } from "./route.js";
import { h, say } from "./dom.js";
import { signIn } from "./pages/signin.js";
import { libraries } from "./pages/libraries.js";
import { entityGrid } from "./pages/entities.js";
import { entityPage } from "./pages/entity.js";
import { registerPage } from "./pages/register.js";
import { queryPage } from "./pages/query.js";
import { runsPage, runPage } from "./pages/runs.js";
import { archivePage } from "./pages/archive.js";

const main = document.getElementById("main");

// route name -> page; a page renders into (main, params, query) and returns its title
const ROUTES = {
  "": libraries,
  signin: signIn,
  lib: entityGrid,
  entity: entityPage,
  register: registerPage,
  query: queryPage,
  runs: runsPage,
  run: runPage,
  archive: archivePage,
};

function nav(library) {
  const { page } = parseHash();
  const links = [["", "Libraries"]];
  if (library) {
    links.push(["lib", "Entities"], ["register", "Register"], ["query", "Query"], ["runs", "Story runs"], ["archive", "Export / import"]);
  }
  const navNode = document.getElementById("nav");
  navNode.replaceChildren(
    ...links.map(([target, text]) =>
      h("a", { href: target ? href(target, library) : "#/", "aria-current": page === target || (target === "lib" && page === "entity") || (target === "runs" && page === "run") ? "page" : null }, text),
    ),
  );
}

async function render() {
  const { page, params, query } = parseHash();
  const show = ROUTES[page] || libraries;
  nav(page && page !== "signin" ? params[0] : null);
  document.getElementById("sign-out").hidden = !key();
  document.getElementById("who").textContent = key() ? "signed in" : "";
  say("");
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    const title = await show(main, params, query);
    document.title = (title ? title + " · " : "") + "continuity";
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && page !== "signin") {
      location.hash = "#/signin?next=" + encodeURIComponent(location.hash);
      return;
    }
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, `${error.type || "Error"}: ${error.message}`));
  }
  // move focus to the new page's heading so keyboard and screen-reader users start there
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  forgetKey();
  location.hash = "#/signin";
});
window.addEventListener("hashchange", render);
render();

