"""A live server on loopback and the system Chromium, driven by Playwright (see test_webapp.py)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
ADMIN_KEY = "browser-test-admin-key"
HOW_TO_GET_ONE = (
    "no Chromium for the browser tests: install the system one (Debian/Ubuntu: `apt-get install -y chromium`)"
    " or point CONTINUITY_CHROMIUM at a Chromium/Chrome binary; `playwright install` needs the network"
)


def chromium_path() -> str | None:
    """The Chromium the tests drive: $CONTINUITY_CHROMIUM, else the system package's."""
    for candidate in (os.environ.get("CONTINUITY_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class LiveServer:
    url: str
    db: Path
    outputs: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``create_app`` under uvicorn in a thread on 127.0.0.1, stopped (and joined) at the end."""
    import uvicorn

    from continuity.server.app import create_app

    base = tmp_path_factory.mktemp("webapp")
    db, outputs = base / "db", base / "outputs"
    app = create_app(str(db), api_key=ADMIN_KEY, outputs_dir=outputs)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="webapp-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start within 20 s")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", db, outputs)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(HOW_TO_GET_ONE)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (the browser itself comes from apt)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        chrome = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chrome
        finally:
            chrome.close()
