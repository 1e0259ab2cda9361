// The query playground: a prompt (optionally a story and shot) -> the hits with scores, reasons and
// chosen references, and the memory keyframes that shot would get.
import { get, lib, part, request } from "../api.js";
import { authImg, clearErrors, field, h, showError, thumbUrl } from "../dom.js";
import { href } from "../route.js";

function hitsTable(library, data) {
  if (!data.hits.length) return h("p", { class: "muted" }, "No hits.");
  return h("table", { class: "card hits", id: "hits" },
    h("caption", { class: "muted" }, `Blueprints for “${data.prompt}”`),
    h("thead", {}, h("tr", {}, ["Entity", "Kind", "Score", "Why", "Chosen references"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, data.hits.map((hit) => h("tr", {},
      h("th", { scope: "row" }, h("a", { href: href("entity", library, hit.name) }, hit.name)),
      h("td", {}, hit.kind), h("td", {}, hit.score.toFixed(3)),
      h("td", { class: "reasons" }, hit.reasons.map((r) => h("span", { class: "tag" }, r))),
      h("td", {}, hit.references.map((r) => authImg(thumbUrl(library, r.id, 96), `${hit.name} reference, era ${r.era}`, { width: 72, height: 72 })))))));
}

function memoryList(library, data) {
  if (!data.memory.length) return h("p", { class: "muted" }, data.story_id ? "No memory keyframes for this shot." : "Give a story to see its memory keyframes.");
  return h("div", { class: "thumbs", id: "memory" }, data.memory.map((m) => {
    const caption = `shot ${(m.shot ?? 0) + 1} frame ${m.frame}${m.reason ? ": " + m.reason : ""}`;
    return h("figure", {}, authImg(thumbUrl(library, m.id, 192), `memory keyframe, ${caption}`), h("figcaption", {}, caption));
  }));
}

// The memory the story loop would give this shot: its hits' entities, keyframes of earlier shots.
async function storyMemory(library, body, hits) {
  const params = new URLSearchParams({ before: body.shot_index });
  for (const hit of hits) params.append("entity", hit.entity_id);
  const location = hits.find((hit) => hit.kind === "location");
  if (location) params.set("location", location.entity_id);
  const data = await get(`${lib(library)}/runs/${part(body.story_id)}/memory?${params}`);
  return data.memory;
}

export async function queryPage(main, [library]) {
  const runs = await get(`${lib(library)}/runs`).catch(() => ({ runs: [] }));
  const prompt = h("textarea", { name: "prompt", required: true }, "");
  const story = h("select", { name: "story_id" }, h("option", { value: "" }, "no story"), runs.runs.map((r) => h("option", { value: r.story_id }, `${r.story_id} (${r.shots} shots)`)));
  const shot = h("input", { type: "number", name: "shot_index", min: 1, step: 1, placeholder: "next" });
  const k = h("input", { type: "number", name: "k", min: 1, max: 100, value: 8 });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "query-title" },
    field("Prompt", prompt, "A shot as a script would say it, e.g. ‘Aria walks along the harbor’."),
    h("div", { class: "row" }, field("Story", story), field("Shot number", shot, "1 is the first shot; memory comes from the shots before it"), field("Hits", k)),
    h("div", { "data-field": "form" }, h("div", { class: "error", role: "alert" })),
    h("button", { type: "submit" }, "Retrieve"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { prompt: prompt.value, k: parseInt(k.value, 10) || 8 };
    if (story.value) {
      body.story_id = story.value;
      const run = runs.runs.find((r) => r.story_id === story.value);
      body.shot_index = shot.value ? parseInt(shot.value, 10) - 1 : run ? run.shots : 0;
    }
    try {
      const data = await request("POST", `${lib(library)}/query`, body);
      if (body.story_id) data.memory = await storyMemory(library, body, data.hits);
      const notes = data.notes.length ? [h("ul", { class: "muted" }, data.notes.map((n) => h("li", {}, n)))] : [];
      out.replaceChildren(h("h2", {}, "Hits"), hitsTable(library, data), h("h2", {}, "Memory keyframes"), memoryList(library, data), ...notes);
    } catch (error) {
      showError(form, error, "prompt");
    }
  });
  main.replaceChildren(h("h1", { id: "query-title" }, `Query ${library}`), form, out);
  return `Query · ${library}`;
}
