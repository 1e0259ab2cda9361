"""The web app's entity grid with 1,000 entities: bytes transferred and load time in a real browser.

A store with 1,000 characters (each one 512x512 JPEG photo, ~50 KB: scikit-image's astronaut
tinted and shifted per entity, so no two share bytes), served by ``create_app`` under uvicorn on 127.0.0.1
(a thread); Chromium (the system package, driven by Playwright) signs in and opens the grid.
Measured from the browser's own network log (CDP ``Network.loadingFinished.encodedDataLength``:
bytes on the wire, headers included), cold cache, three runs (median):
- the grid's first view: the page, its scripts and styles, ``GET /gallery`` (one page of 48), and
  the thumbnails the browser fetched (only those near the viewport: they load as they scroll in);
- after scrolling to the end of the first page (all 48 thumbnails);
- for comparison: the full ``GET /entities`` list and the full-size images the grid would fetch
  if it showed every entity's first reference unpaged.
Load time: navigation start to the first page's tiles shown with every thumbnail in view decoded.

Writes benchmarks/results/webapp.json. Run: ``python benchmarks/bench_webapp.py`` (the store is kept in
``$TMPDIR/continuity-bench-webapp-db`` and reused; needs
``apt-get install chromium``; ~2 minutes on 2 cores, most of it registering the 1,000 entities).
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "webapp.json"
ENTITIES = 1000
RUNS = 3
KEY = "bench-webapp-key"
VIEWPORT = {"width": 1280, "height": 900}


def photos(n: int) -> list[bytes]:
    """``n`` distinct real-photo JPEGs (the astronaut, tinted and shifted per entity)."""
    from skimage import data

    base = data.astronaut().astype(np.int16)
    out = []
    for i in range(n):
        tint = np.array([(i * 37) % 64, (i * 17) % 64, (i * 7) % 64], np.int16) - 32
        arr = np.clip(np.roll(base, i, axis=1) + tint, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def build_store(db: Path) -> dict[str, float]:
    """The 1,000-entity store, made once and kept at ``db`` (reused by later runs: the figures are the
    browser's, and registering 1,000 entities takes minutes)."""
    from memstore.store import Store

    if (db / "entities.lance").is_dir() and Store.open(str(db)).library("default").count()["entities"] == ENTITIES:
        return {"register_s": None, "reused_store": True}
    shutil.rmtree(db, ignore_errors=True)
    started = time.perf_counter()
    library = Store.init(db).library("default")
    images = photos(ENTITIES)
    for i, image in enumerate(images):
        if i % 100 == 0:
            print(f"registering {i}/{len(images)}", file=sys.stderr, flush=True)
        tags = ["hero"] if i % 10 == 0 else ["crowd"]
        library.register(f"Character {i:04d}", "character", images=[image], tags=tags, description=f"extra number {i}")
    return {
        "register_s": round(time.perf_counter() - started, 1),
        "mean_image_bytes": round(sum(map(len, images)) / len(images)),
    }


def serve(db: Path) -> tuple[Any, threading.Thread, str]:
    import socket

    import uvicorn

    from continuity.server.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(str(db), api_key=KEY), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


ALL_IN_VIEW_LOADED = """() => {
  const imgs = [...document.querySelectorAll('#entity-grid img')];
  const inView = imgs.filter(i => { const r = i.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; });
  return imgs.length > 0 && inView.every(i => i.complete && i.naturalWidth > 0);
}"""


def measure(browser: Any, url: str) -> dict[str, Any]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    sizes: dict[str, float] = {}
    urls: dict[str, str] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
    page.add_init_script(f"sessionStorage.setItem('continuity.api_key', {json.dumps(KEY)})")

    def snapshot() -> dict[str, Any]:
        done = {urls.get(k, ""): v for k, v in sizes.items()}
        thumbs = [v for u, v in done.items() if "/thumbnail" in u]
        return {
            "requests": len(done),
            "bytes": int(sum(done.values())),
            "thumbnails": len(thumbs),
            "thumbnail_bytes": int(sum(thumbs)),
            "gallery_json_bytes": int(sum(v for u, v in done.items() if "/gallery" in u)),
            "page_and_assets_bytes": int(sum(v for u, v in done.items() if u.endswith("/") or "/app/" in u)),
        }

    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    started = time.perf_counter()
    page.goto(url + "/#/lib/default")
    try:
        page.wait_for_function(ALL_IN_VIEW_LOADED, timeout=180_000)
    except Exception:
        print(page.inner_text("body")[:2000], problems, file=sys.stderr)
        raise
    load_s = time.perf_counter() - started
    page.wait_for_load_state("networkidle")
    first = snapshot()
    tiles = page.locator("#entity-grid .tile").count()
    total = page.inner_text(".pager span")
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function(ALL_IN_VIEW_LOADED, timeout=180_000)
    page.wait_for_load_state("networkidle")
    scrolled = snapshot()
    context.close()
    return {
        "load_s": round(load_s, 3),
        "first_view": first,
        "after_scrolling_page": scrolled,
        "tiles": tiles,
        "pager": total,
    }


def unpaged_figures(url: str) -> dict[str, int]:
    """What showing all 1,000 at once would cost: the full list, and the full-size first images."""
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        listing = client.get("/libraries/default/entities")
        gallery = client.get("/libraries/default/gallery", params={"limit": 200, "offset": 0}).json()
        first_refs = [
            e["thumbnail_url"].split("?")[0].replace("/thumbnail", "/image") for e in gallery["entities"][:50]
        ]
        image_bytes = [len(client.get(u).content) for u in first_refs]
    return {
        "entities_list_json_bytes": len(listing.content),
        "full_images_for_1000_estimated_bytes": int(statistics.mean(image_bytes) * ENTITIES),
    }


def main() -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import chromium_path

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium: apt-get install -y chromium")
    db = Path(tempfile.gettempdir()) / "continuity-bench-webapp-db"
    store_figures = build_store(db)
    server, thread, url = serve(db)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            runs = [measure(browser, url) for _ in range(RUNS)]
            browser.close()
        unpaged = unpaged_figures(url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    median = sorted(runs, key=lambda r: r["load_s"])[len(runs) // 2]
    result = {
        "benchmark": "webapp",
        "command": "python benchmarks/bench_webapp.py",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "browser": executable},
        "entities": ENTITIES,
        "viewport": VIEWPORT,
        "store": store_figures,
        "median_run": median,
        "load_s_runs": [r["load_s"] for r in runs],
        "unpaged_for_comparison": unpaged,
        "notes": [
            "bytes are the browser's encodedDataLength (on the wire, headers included), cold cache",
            "the grid pages 48 entities per request and fetches a thumbnail (JPEG, longest side 192 px) only as it nears the viewport",
            "full_images_for_1000_estimated_bytes: the mean of 50 first-reference images x 1000,"
            " what an unpaged grid of full images would move",
        ],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
