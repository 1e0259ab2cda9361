"""Upload attacks against a real server: peak memory and time, before and after the pixel budget.

1. The request of issue 11: 16 distinct 1-bit PNGs of 6300 x 6300 = 39.69 MP each (just under the
   per-image limit; a few KB each) in one POST to ``continuity serve`` on 127.0.0.1 (a uvicorn
   subprocess). Peak RSS of the server (psutil, polled every 20 ms) and the request's time, with
   the batch budget switched off (``CONTINUITY_MAX_BATCH_PIXELS`` = 10^12: the behaviour before
   it) and with the default budget (``memstore.images.MAX_BATCH_PIXELS``).
2. A 1 GiB sparse file given as an image path: peak RSS and time of ``load_image`` in a fresh
   process, with the committed ``memstore/images.py`` of ``git HEAD`` (read whole, then checked)
   and with the working tree's (size checked before reading).

Writes benchmarks/results/uploads.json. Run: ``python benchmarks/bench_uploads.py``
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "uploads.json"
SIDE = 6300
OFF = str(10**12)


def bilevel_png(side: int, seed: int) -> bytes:
    """A real 1-bit PNG, all black but one byte (so every image of the request is distinct)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    width = (side + 7) // 8
    rows = bytearray(b"\0" * ((1 + width) * side))
    rows[(1 + width) * (seed % side) + 1] = 0xFF
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def attack(work: Path, budget: str | None, files: list[tuple[str, tuple[str, bytes, str]]]) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CONTINUITY_MAX_BATCH_PIXELS", None)
    if budget is not None:
        env["CONTINUITY_MAX_BATCH_PIXELS"] = budget
    db = work / f"db-{budget or 'default'}"
    cmd = [sys.executable, "-m", "continuity.cli", "serve", "--port", str(port), "--db", str(db)]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        proc = psutil.Process(server.pid)
        idle = rss(proc)
        peak = [idle]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss(proc))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.perf_counter()
        response = httpx.post(
            base + "/libraries/default/entities", data={"name": "Bomb", "kind": "prop"}, files=files, timeout=600
        )
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
        body = response.json()
        return {
            "budget_pixels": int(budget) if budget is not None else "default",
            "status": response.status_code,
            "error": body.get("error"),
            "seconds": round(seconds, 2),
            "idle_rss_mb": round(idle / 2**20),
            "peak_rss_mb": round(peak[0] / 2**20),
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


SPARSE_PROBE = r"""
import importlib.util, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import memstore.errors
if sys.argv[3] == "head":
    spec = importlib.util.spec_from_file_location("memstore._images_head", sys.argv[4])
    images = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(images)
else:
    from memstore import images
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    images.load_image(sys.argv[2])
    outcome = "loaded"
except memstore.errors.ContinuityError as exc:
    outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0][-90:]}"
except MemoryError:
    outcome = "MemoryError"
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": round(seconds, 3), "added_peak_rss_mb": round((after - before) / 1024)}))
"""


def sparse(work: Path) -> dict:
    path = work / "huge.png"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)
    head = work / "images_head.py"
    head.write_text(
        subprocess.run(
            ["git", "show", "HEAD:memstore/images.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    out = {}
    for label in ("head", "now"):
        run = subprocess.run(
            [sys.executable, "-c", SPARSE_PROBE, str(ROOT), str(path), label, str(head)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        out["before" if label == "head" else "after"] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    from memstore.images import MAX_BATCH_PIXELS

    work = Path(tempfile.mkdtemp(prefix="bench-uploads-"))
    try:
        images = [bilevel_png(SIDE, i) for i in range(16)]
        files = [("images", (f"p{i}.png", data, "image/png")) for i, data in enumerate(images)]
        request = {"images": 16, "pixels_each": SIDE * SIDE, "bytes": sum(len(d) for d in images)}
        print(f"request: {request}", flush=True)
        before = attack(work, OFF, files)
        print(f"before the budget: {before}", flush=True)
        after = attack(work, None, files)
        print(f"after the budget: {after}", flush=True)
        gig = sparse(work)
        print(f"1 GiB sparse file: {gig}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {
        "benchmark": "uploads",
        "command": "python benchmarks/bench_uploads.py",
        "commit": commit,
        "note": "HEAD is the commit the working tree was measured on; 'after' is the working tree",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "max_batch_pixels": MAX_BATCH_PIXELS,
        "request": request,
        "upload_attack": {"before_budget": before, "after_budget": after},
        "sparse_1gib_file": gig,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
