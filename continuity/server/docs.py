"""``/docs`` that works offline and opens in a browser.

FastAPI's own page loads Swagger UI from a CDN (blank offline) and sits behind the bearer key,
which a browser's address bar cannot send. This page is public and holds no data: it asks for a
key (kept in the tab's ``sessionStorage``), fetches ``/openapi.json`` with it and renders it with
Swagger UI from the ``swagger-ui-bundle`` package (the server extra) served under
``/docs/assets/``; "Try it out" requests carry the key too. Without that package the page lists
the routes itself, still with no network.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from memstore.errors import NotFoundError

router = APIRouter(include_in_schema=False)
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
# The page's own script only: nothing but this server's files may run or load in it.
CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"


def swagger_assets() -> Path | None:
    """The folder of the installed swagger-ui-bundle, or None."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    folder = Path(str(swagger_ui_bundle.swagger_ui_path))
    return folder if (folder / ASSETS[0]).is_file() else None


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>continuity API</title>
{head}
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; }}
#key-form {{ padding: 12px 20px; background: #f3f3f3; border-bottom: 1px solid #ddd; }}
#key-form input {{ width: 28em; }}
#routes li {{ margin: 4px 0; font-family: ui-monospace, monospace; }}
#routes .m {{ display: inline-block; width: 5em; font-weight: bold; }}
#status {{ margin-left: 1em; color: #a00; }}
</style></head>
<body>
<form id="key-form">
  <label>API key <input id="key" type="password" autocomplete="off" placeholder="Bearer key (empty: none)"></label>
  <button type="submit">Use key</button> <button type="button" id="forget">Forget</button>
  <span id="status"></span>
</form>
<div id="swagger"></div><ul id="routes"></ul>
<script>
const STORE = "continuity.api_key";
const key = () => sessionStorage.getItem(STORE) || "";
const headers = () => (key() ? {{ Authorization: "Bearer " + key() }} : {{}});
const status = (text) => {{ document.getElementById("status").textContent = text; }};

function listRoutes(spec) {{
  const ul = document.getElementById("routes");
  ul.replaceChildren();
  for (const [path, ops] of Object.entries(spec.paths || {{}})) {{
    for (const [method, op] of Object.entries(ops)) {{
      const li = document.createElement("li");
      const m = document.createElement("span");
      m.className = "m";
      m.textContent = method.toUpperCase();
      li.append(m, path + "  " + (op.summary || ""));
      ul.append(li);
    }}
  }}
}}

async function load() {{
  const r = await fetch("/openapi.json", {{ headers: headers() }});
  if (!r.ok) {{
    const body = await r.json().catch(() => ({{}}));
    status((body.message || r.statusText) + (r.status === 401 ? " (enter a key above)" : ""));
    return;
  }}
  status("");
  const spec = await r.json();
  if (window.SwaggerUIBundle) {{
    window.SwaggerUIBundle({{
      spec, dom_id: "#swagger",
      requestInterceptor: (req) => {{ if (key()) req.headers.Authorization = "Bearer " + key(); return req; }},
    }});
  }} else {{
    listRoutes(spec);
  }}
}}

document.getElementById("key-form").addEventListener("submit", (e) => {{
  e.preventDefault();
  sessionStorage.setItem(STORE, document.getElementById("key").value.trim());
  load();
}});
document.getElementById("forget").addEventListener("click", () => {{ sessionStorage.removeItem(STORE); load(); }});
load();
</script></body></html>
"""


def docs_page(with_swagger: bool) -> str:
    head = (
        '<link rel="stylesheet" href="/docs/assets/swagger-ui.css">\n'
        '<link rel="icon" href="/docs/assets/favicon-32x32.png">\n'
        '<script src="/docs/assets/swagger-ui-bundle.js"></script>'
        if with_swagger
        else ""
    )
    return _PAGE.format(head=head)


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return HTMLResponse(docs_page(swagger_assets() is not None), headers={"Content-Security-Policy": CSP})


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> Response:
    folder = swagger_assets()
    if folder is None or name not in ASSETS:  # a fixed list: no path from the request reaches the disk
        raise NotFoundError(f"no docs asset {name[:80]!r}; the docs page loads only {', '.join(ASSETS)}")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response((folder / name).read_bytes(), media_type=media, headers=headers)
