import { get, setKey, forgetKey } from "../api.js";
import { field, h, showError, clearErrors } from "../dom.js";

export async function signIn(main, params, query) {
  const input = h("input", { type: "password", name: "key", autocomplete: "off", required: true });
  const form = h("form", { class: "card", "aria-labelledby": "signin-title" },
    field("API key", input, "An admin key or a library key (continuity keys create). Kept in this tab only."),
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    setKey(input.value);
    try {
      await get("/libraries");
      const next = query.get("next");
      location.hash = next && next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/";
    } catch (error) {
      forgetKey();
      showError(form, error, "key");
    }
  });
  main.replaceChildren(h("h1", { id: "signin-title" }, "Sign in"), form);
  return "Sign in";
}
