"""The web app in a real browser (Playwright driving the system Chromium), as a curator uses it:
sign in, register a character from two real photos, find it in the grid, open it, add images by
drag and drop, rename it, query, open a story run and play a shot, meet a typed error for a
truncated image, export and import. Screenshots of each page go to test-artifacts/screenshots/."""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import ADMIN_KEY, SCREENSHOTS, LiveServer

pytestmark = pytest.mark.slow  # a real browser: about a minute for the file

STORY = """\
id: harbor
title: The harbor letter
cast: [{name: Aria, kind: character}]
scenes:
  - index: 1
    shots:
      - {index: 1, prompt: "Aria walks onto the pier at dusk.", cut: true}
      - {index: 2, prompt: "She reads a folded letter.", cut: false}
"""


def insightface_images() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface is not installed: its wheel carries the sample photos these tests upload")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "images"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos on disk: scikit-image's astronaut and the insightface wheel's samples."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    astronaut = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(astronaut)
    coffee = folder / "coffee.jpg"
    Image.fromarray(data.coffee()).save(coffee, quality=90)
    samples = insightface_images()
    truncated = folder / "truncated.jpg"
    truncated.write_bytes((samples / "t1.jpg").read_bytes()[:6000])  # a download cut short
    return {
        "astronaut": astronaut,
        "group": samples / "t1.jpg",
        "portrait": samples / "Tom_Hanks_54745.png",
        "coffee": coffee,
        "truncated": truncated,
    }


def shot(page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    # images in view are fetched with the key as they appear: wait for them before the picture
    page.wait_for_function(
        """() => [...document.querySelectorAll('main img')].filter(i => i.getBoundingClientRect().top < innerHeight)
                 .every(i => i.hasAttribute('data-error') || (i.complete && i.naturalWidth > 0))"""
    )
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def api(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def sign_in(page, server: LiveServer, key: str) -> None:
    page.goto(server.url + "/")
    page.wait_for_url("**/#/signin**")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:text('Libraries')")


def images_loaded(page, selector: str) -> int:
    """How many images under ``selector`` have decoded pixels (fetched with the key as blobs)."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s + ' img')].some(i => i.complete && i.naturalWidth > 0)", arg=selector
    )
    return page.eval_on_selector_all(selector + " img", "imgs => imgs.filter(i => i.naturalWidth > 0).length")


def drop_files(page, selector: str, files: list[Path]) -> None:
    """Drag files from the desktop onto ``selector``: a drop event carrying them in its DataTransfer."""
    payload = [{"name": f.name, "b64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    transfer = page.evaluate_handle(
        """files => { const dt = new DataTransfer();
            for (const f of files) {
              const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
              dt.items.add(new File([bytes], f.name, {type: f.name.endsWith('.png') ? 'image/png' : 'image/jpeg'}));
            }
            return dt; }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def run_story(server: LiveServer, tmp: Path) -> Path:
    """A two-shot story with the animatic generator (no weights), into the server's store."""
    from typer.testing import CliRunner

    from continuity.cli import app

    script = tmp / "story.yaml"
    script.write_text(STORY)
    out = tmp / "run"
    args = ["story", "run", str(script), "--generator", "animatic", "--out", str(out), "--db", str(server.db)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def page_of(browser):
    """A new page per test; on a failure its screenshot and text are kept (``failed-<test>.png``)."""
    opened = []

    def make(**options):
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        opened.append(context)
        return context.new_page()

    yield make
    for context in opened:
        context.close()


def test_a_curator_works_through_the_app(live_server, page_of, photos, tmp_path):
    page = page_of(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        journey(page, live_server, photos, tmp_path)
    except BaseException:
        page.screenshot(path=str(SCREENSHOTS / "failed-journey.png"), full_page=True)
        print(page.inner_text("body"))
        raise


def journey(page, live_server: LiveServer, photos: dict[str, Path], tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # sign in: a wrong key is a typed error next to the field; the right one opens the libraries
    page.goto(live_server.url + "/")
    page.wait_for_url("**/#/signin**")
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-field=key] .error:text('UnauthorizedError')")
    shot(page, "01-sign-in-error")
    assert page.evaluate("() => sessionStorage.getItem('continuity.api_key')") is None
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:text('Libraries')")
    assert page.evaluate("() => sessionStorage.getItem('continuity.api_key')") == ADMIN_KEY
    assert page.evaluate("() => localStorage.length") == 0 and page.evaluate("() => document.cookie") == ""

    # register a character with two real photos: a progress bar per file, then its page
    page.goto(live_server.url + "/#/register/default")
    page.get_by_label("Name", exact=True).fill("Aria")
    page.get_by_label("Description").fill("red-haired knight with a scar")
    page.get_by_label("Aliases").fill("the knight")
    page.get_by_label("Tags").fill("hero, season 1")
    page.get_by_label("Consent").select_option("yes")
    page.set_input_files("input[name=images]", [photos["astronaut"], photos["group"]])
    assert page.locator(".uploads progress").count() == 2
    shot(page, "02-register")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url("**/#/entity/default/Aria")
    page.wait_for_selector("h1:text('Aria')")
    assert page.locator("[data-source=registered]").count() == 2
    facts = page.inner_text("#facts")
    assert "the knight" in facts and "red-haired knight" in facts and "yes" in facts and "season 1" in facts
    assert images_loaded(page, ".refs") >= 1
    assert page.locator(".facebox").count() == 0 or page.locator(".facebox").first.is_visible()

    # drag and drop two more photos: one bar each, both added, whole
    drop_files(page, ".drop", [photos["portrait"], photos["coffee"]])
    page.wait_for_function("() => document.querySelectorAll('[data-source=registered]').length === 4")
    shot(page, "03-entity")

    # the grid: the new character with its thumbnail, found by kind, tag and name
    page.goto(live_server.url + "/#/lib/default")
    page.wait_for_selector("#entity-grid .tile:has-text('Aria')")
    assert images_loaded(page, "#entity-grid") == 1
    page.get_by_label("Search by name").fill("knig")  # an alias matches too
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**q=knig**")
    page.wait_for_selector("#entity-grid .tile:has-text('Aria')")
    page.get_by_label("Kind").select_option("location")
    page.wait_for_selector("text=No entity matches.")
    page.goto(live_server.url + "/#/lib/default?tag=hero")
    page.wait_for_selector("#entity-grid .tile:has-text('Aria')")
    shot(page, "04-grid")

    # open it and rename it: the old name stays an alias
    page.locator("#entity-grid a:has-text('Aria')").click()
    page.wait_for_url("**/#/entity/default/Aria")
    page.get_by_label("New name").fill("Aria Stone")
    page.get_by_role("button", name="Rename").click()
    page.wait_for_url("**/#/entity/default/Aria%20Stone")
    page.wait_for_selector("h1:text('Aria Stone')")
    assert "Aria" in page.inner_text("#facts")

    # a story run (animatic generator) made from the store; the cast name resolves through the alias
    run_story(live_server, tmp_path)

    # the query playground: hits with scores, reasons, chosen references, memory keyframes
    page.goto(live_server.url + "/#/query/default")
    page.get_by_label("Prompt").fill("Aria walks onto the pier at dusk.")
    page.get_by_label("Story").select_option("harbor")
    page.get_by_label("Shot number").fill("3")
    page.get_by_role("button", name="Retrieve").click()
    page.wait_for_selector("#hits th:has-text('Aria Stone')")
    reasons = page.inner_text("#hits .reasons")
    assert reasons.strip(), "every hit says why it was retrieved"
    page.wait_for_selector("#memory figure")
    assert images_loaded(page, "#hits") >= 1
    shot(page, "05-query")

    # story runs: the run, its shots numbered from 1, memory, keyframes, metrics; play shot 1
    page.goto(live_server.url + "/#/runs/default")
    page.get_by_role("link", name="harbor").click()
    page.wait_for_selector("h2:has-text('Shot 1')")
    assert page.locator("h2:has-text('Shot 2')").count() == 1 and page.locator("h2:has-text('Shot 0')").count() == 0
    assert page.locator("#metrics").count() == 1
    text = page.inner_text(".run-host")
    assert "Memory keyframes used" in text and "Keyframes extracted" in text and "shot 1 frame" in text
    video = page.locator("video").first
    video.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const v = document.querySelector('video'); return v.src.startsWith('blob:') && v.poster.startsWith('blob:'); }"
    )
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('video').currentTime > 0")
    shot(page, "06-story-run")

    # a truncated image: the typed error next to the images field, nothing registered
    page.goto(live_server.url + "/#/register/default")
    page.get_by_label("Name", exact=True).fill("Broken")
    page.set_input_files("input[name=images]", [photos["truncated"], photos["coffee"]])
    page.get_by_role("button", name="Register").click()
    error = page.locator("[data-field=images] .error")
    error.wait_for()
    assert "TruncatedImageError" in error.inner_text() and "truncated.jpg" in error.inner_text()
    assert page.get_attribute("input[name=images]", "aria-invalid") == "true"
    shot(page, "07-truncated-image-error")
    with api(live_server) as client:
        assert client.get("/libraries/default/entities/Broken").status_code == 404

    # export (a download); importing it over itself is a typed error; remove, then restore from it
    page.goto(live_server.url + "/#/archive/default")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export default").click()
    saved = tmp_path / "default.continuity"
    download.value.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK" and download.value.suggested_filename == "default.continuity"
    page.set_input_files("input[name=archive]", saved)
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("[data-field=archive] .error:has-text('ArchiveError')")
    assert "already exist" in page.inner_text("[data-field=archive] .error")
    page.goto(live_server.url + "/#/entity/default/Aria%20Stone")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove Aria Stone").click()
    page.wait_for_url("**/#/lib/default")
    page.wait_for_selector("text=No entities in default yet.")
    page.goto(live_server.url + "/#/archive/default")
    page.set_input_files("input[name=archive]", saved)
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("text=Imported 1 entities")
    shot(page, "08-export-import")
    page.goto(live_server.url + "/#/lib/default")
    page.wait_for_selector("#entity-grid .tile:has-text('Aria Stone')")
    page.goto(live_server.url + "/#/")
    page.wait_for_selector("tr:has-text('default')")
    shot(page, "09-libraries")
    assert errors == []


def test_a_library_key_sees_only_its_library(live_server, page_of):
    from memstore.keys import KeyRing
    from memstore.store import Store

    with api(live_server) as client:
        pixels = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(pixels, format="PNG")
        for library, name in (("studio", "Harbor"), ("rival", "Secret")):
            files = {"images": ("x.png", pixels.getvalue(), "image/png")}
            client.post(f"/libraries/{library}/entities", data={"name": name, "kind": "location"}, files=files)
    key = KeyRing(Store.open(str(live_server.db))).create("studio", "read").key
    page = page_of(viewport={"width": 1280, "height": 800})
    sign_in(page, live_server, key)
    rows = page.inner_text("table")
    assert "studio" in rows and "rival" not in rows and "default" not in rows
    page.goto(live_server.url + "/#/lib/rival")
    page.wait_for_selector("text=ForbiddenError")


def test_tablet_width_and_keyboard(live_server, page_of):
    page = page_of(viewport={"width": 768, "height": 1024})
    sign_in(page, live_server, ADMIN_KEY)
    for route, name in (("#/lib/default", "10-tablet-grid"), ("#/register/default", "11-tablet-register")):
        page.goto(f"{live_server.url}/{route}")
        page.wait_for_selector("main h1")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 768, f"{route} scrolls sideways at 768 px"
        shot(page, name)
    # every control has a label, every image a text alternative
    unlabeled = page.eval_on_selector_all(
        "main input, main select, main textarea",
        "els => els.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)",
    )
    assert unlabeled == []
    assert page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.hasAttribute('alt')).length") == 0
    # focus order: a new page puts focus on its heading; Tab then walks the fields in reading order;
    # the skip link is the first stop of the document
    assert page.evaluate("() => document.activeElement.tagName") == "H1"
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.name || document.activeElement.textContent"))
    first = page.evaluate("() => document.querySelector('a[href], button, input, select, textarea').className")
    assert first == "skip"
    assert order.index("name") < order.index("kind") < order.index("description")
