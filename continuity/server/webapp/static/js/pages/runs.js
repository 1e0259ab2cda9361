// Story runs: the runs the store holds, and one run's view, rendered by the server with the same
// code as report.html (continuity.report.render_run); its media is fetched here with the key.
import { get, lib, part } from "../api.js";
import { h, lazyMedia } from "../dom.js";
import { href } from "../route.js";

export async function runsPage(main, [library]) {
  const data = await get(`${lib(library)}/runs`);
  main.replaceChildren(
    h("h1", {}, `Story runs of ${library}`),
    data.runs.length
      ? h("table", { class: "card" },
          h("thead", {}, h("tr", {}, ["Story", "Shots", "Videos", "Generator", "Last shot"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, data.runs.map((r) => h("tr", {},
            h("th", { scope: "row" }, h("a", { href: href("run", library, r.story_id) }, r.story_id)),
            h("td", {}, r.shots), h("td", {}, r.videos), h("td", {}, r.generator || "–"), h("td", {}, new Date(r.updated).toLocaleString())))))
      : h("p", { class: "muted" }, "No story runs yet: run one with ‘continuity story run’ or the HTTP story API."),
  );
  return `Story runs · ${library}`;
}

export async function runPage(main, [library, story]) {
  const html = await get(`${lib(library)}/runs/${part(story)}/view`);
  const host = h("div", { class: "run-host" });
  // The fragment is the server's own rendering, every piece of user text escaped there
  // (continuity/report.py), and the page's CSP lets no inline script run.
  host.innerHTML = html;
  const heading = host.querySelector("h1");
  main.replaceChildren(h("p", {}, h("a", { href: href("runs", library) }, `← Story runs of ${library}`)), host);
  lazyMedia(host);
  // a video's bytes are fetched when it nears the viewport; pressing play before that fetches them now
  for (const video of host.querySelectorAll("video[data-src]")) {
    video.addEventListener("play", () => video.getAttribute("data-src") && lazyMedia(video.parentNode), { once: true });
  }
  return `${heading ? heading.textContent : story} · ${library}`;
}
