"""Ingest throughput: serial ``continuity import-folder`` vs ``continuity ingest`` on Ray (1 and 2
workers), and the raw embedders in-process as the limit, on one set of 200 real-photo face crops.

The set: every face dlib's HOG detector finds (upsampled once, score >= 0.3) in the photos that ship in the
insightface wheel (``insightface/data/images/*.jpg``, *.png: a group photo, masked faces, a portrait)
and in ``skimage.data.astronaut()``. 40 entities of 5 crops each; entity ``i`` takes face
``i % faces``, and each of its crops is a square around the face of 1.6-2.6x its size, shifted by up
to 15% of it, mirrored every other crop, brightness x0.8-1.2, resized to 256 px and saved as JPEG
(quality 92); seeded, so every run makes the same 200 files.

Library: ``color-histogram`` + ``dlib`` (kind character, so every image gets both). Each figure is
images per second over the whole command as a user runs it, in-process (no interpreter start):
import-folder includes its dlib model load; ingest includes starting and stopping its local Ray
cluster (``workers + 1`` CPUs), the workers' model loads and the per-entity commits. ``steady``
counts only between the first and the last image coming back from the workers. The machine is
shared, so its load average is recorded next to the figures.

Writes benchmarks/results/ingest.json. Run: ``.venv/bin/python benchmarks/bench_ingest.py``
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "ingest.json"
ENTITIES, PER_ENTITY, SIDE = 40, 5, 256
EMBEDDERS = ["color-histogram", "dlib"]
MIN_SCORE = 0.3  # the HOG detector's confidence; below it here sits one false "face" on the astronaut's suit


def source_photos() -> dict[str, np.ndarray]:
    import importlib.util

    from skimage import data

    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations, "the insightface wheel is needed for its photos"
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    photos = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.[jp][pn]g"))}
    photos["skimage-astronaut"] = data.astronaut()
    return photos


def faces(photos: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray, tuple[int, int, int, int]]]:
    import dlib

    detector = dlib.get_frontal_face_detector()
    found = []
    for name, rgb in photos.items():
        rects, scores, _ = detector.run(rgb, 1, 0.0)
        for rect, score in zip(rects, scores, strict=True):
            if score >= MIN_SCORE:
                found.append((name, rgb, (rect.left(), rect.top(), rect.right(), rect.bottom())))
    return found


def crop(rgb: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, mirror: bool) -> Image.Image:
    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0)
    half = size * rng.uniform(1.6, 2.6) / 2
    cx = (x0 + x1) / 2 + rng.uniform(-0.15, 0.15) * size
    cy = (y0 + y1) / 2 + rng.uniform(-0.15, 0.15) * size
    img = Image.fromarray(rgb).crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half)))
    img = img.resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    if mirror:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))


def make_set(root: Path) -> dict[str, object]:
    found = faces(source_photos())
    rng = np.random.default_rng(17)
    for i in range(ENTITIES):
        name, rgb, box = found[i % len(found)]
        folder = root / f"person-{i:02d}"
        folder.mkdir(parents=True)
        for j in range(PER_ENTITY):
            crop(rgb, box, rng, mirror=j % 2 == 1).save(folder / f"{j}.jpg", quality=92)
    return {"faces_found": len(found), "sources": sorted({n for n, _, _ in found})}


def new_library(db: Path):
    from memstore.store import Store

    lib = Store.init(db).library("default")
    lib.configure(embedders=EMBEDDERS)
    return lib


def raw_embedders(folder: Path) -> dict[str, float]:
    from memstore.embedders import get_embedder
    from memstore.images import load_image

    paths = sorted(folder.glob("*/*.jpg"))
    images = [load_image(p).to_pil() for p in paths]
    out: dict[str, float] = {}
    total = 0.0
    for name in EMBEDDERS:
        emb = get_embedder(name)
        emb.embed(images[:1])  # the model load is not the embedder's throughput
        started = time.perf_counter()
        emb.embed(images)
        seconds = time.perf_counter() - started
        out[f"{name}_images_per_s"] = round(len(images) / seconds, 2)
        total += seconds
    out["both_images_per_s"] = round(len(images) / total, 2)
    return out


def serial_import_folder(folder: Path, db: Path, images: int) -> dict[str, float]:
    from typer.testing import CliRunner

    from continuity.cli import app

    new_library(db)
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["import-folder", str(folder), "--db", str(db)])
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    return {"seconds": round(seconds, 2), "images_per_s": round(images / seconds, 2)}


def ray_ingest(folder: Path, db: Path, workers: int) -> dict[str, object]:
    from continuity.ingest import ingest_folder

    lib = new_library(db)
    stamps: list[float] = []
    started = time.perf_counter()
    summary = ingest_folder(
        lib, folder, workers=workers, progress=lambda done, total: stamps.append(time.perf_counter())
    )
    seconds = time.perf_counter() - started
    assert len(summary.landed) == ENTITIES and not summary.failed, summary.to_json()
    images = summary.images_processed
    first, last = stamps[1], stamps[-1]  # stamps[0] is the call before any image
    return {
        "workers": workers,
        "seconds": round(seconds, 2),
        "images_per_s": round(images / seconds, 2),
        "first_image_after_s": round(first - started, 2),
        "steady_images_per_s": round((images - 1) / (last - first), 2),
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        folder = work / "crops"
        made = make_set(folder)
        images = ENTITIES * PER_ENTITY
        load_before = os.getloadavg()
        raw = raw_embedders(folder)
        serial = serial_import_folder(folder, work / "serial-db", images)
        ray_runs = [ray_ingest(folder, work / f"ray-{n}-db", n) for n in (1, 2)]
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import ray

    result = {
        "command": ".venv/bin/python benchmarks/bench_ingest.py",
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {
            "cpu_cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        },
        "set": {
            "images": images,
            "entities": ENTITIES,
            "size_px": SIDE,
            "made_from": made,
            "how": "dlib HOG faces in insightface/data/images/* and skimage astronaut; 1.6-2.6x square crops,"
            " +-15% shift, every other mirrored, brightness 0.8-1.2, 256 px JPEG q92, seed 17",
        },
        "embedders": EMBEDDERS,
        "raw_embedders_in_process": raw,
        "serial_import_folder": serial,
        "ray_ingest": ray_runs,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
