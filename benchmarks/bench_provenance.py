"""Provenance cost per shot and watermark survival.

1. Cost per shot (ms, median of ``--shots`` shots): a 640x360 shot of 24 frames (2 s at 12 fps) of
   real photos, as ``StorySession.commit`` publishes it: watermark the frames, write the MP4 (for
   scale), sign the MP4 and one keyframe JPEG with C2PA (a throwaway EC P-256 chain, es256, two
   registered references as ingredients), read and validate the credentials back, decode the
   watermark from the MP4 (16 sampled frames).
2. Survival: share of frames whose watermark reads back after an MP4 re-encode (the shot as the
   loop writes it, CRF 20, then encoded again at x264's default CRF 23), JPEG quality 75, a
   half-size copy, a centred crop keeping 90% of each side, and the same crop at odd pixel offsets
   (``crop_10_offset``); over the 640x360 frames of every photo scikit-image ships (resized) plus
   drawn animatic frames (continuity.drawn), each frame watermarked as its own shot.
3. Reading: decode time per 1280x720 frame (marked, marked and cropped at an odd offset, unmarked:
   the worst case, every reading tried), the check evaluations one image can cost and the bound
   on a false id they give, and the ids read from the unmarked frames, their crops and half-size
   copies (should be none).

Writes benchmarks/results/provenance.json. Run: ``python benchmarks/bench_provenance.py``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "provenance.json"
SIZE = (640, 360)
PHOTOS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "colorwheel", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip


def frames_set() -> dict[str, np.ndarray]:
    import cv2
    from skimage import data

    from continuity.drawn import forest_clearing, harbor_at_dusk

    out = {}
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.dtype != np.uint8:
            image = (255 * (image.astype(np.float64) / max(image.max(), 1))).astype(np.uint8)
        out[name] = cv2.resize(np.ascontiguousarray(image[:, :, :3]), SIZE, interpolation=cv2.INTER_AREA)
    for draw in (forest_clearing, harbor_at_dusk):
        for seed in range(3):
            frame = np.asarray(draw(SIZE).convert("RGB")).copy()
            shift = 12 * seed  # a camera move: drawn frames of one shot differ by a pan
            out[f"{draw.__name__}_{seed}"] = np.roll(frame, shift, axis=1)
    return out


def shot_costs(frames: dict[str, np.ndarray], shots: int, tmp: Path) -> dict[str, float]:
    from continuity.provenance.credentials import (
        Ingredient,
        SigningIdentity,
        read_credentials,
        shot_definition,
        sign_file,
    )
    from continuity.provenance.devcert import write_test_identity
    from continuity.provenance.manifest import ShotManifest
    from continuity.provenance.watermark import decode_frames, embed_frames, watermark_id
    from continuity.video import read_frames, write_mp4

    cert, key = write_test_identity(tmp / "id")
    identity = SigningIdentity.from_files(cert, key)
    photos = list(frames.values())
    refs = []
    for i in range(2):
        path = tmp / f"ref{i}.png"
        from PIL import Image

        Image.fromarray(photos[i]).save(path)
        refs.append(Ingredient(f"ref {i}", path.read_bytes(), "image/png", "0" * 64))
    rows: dict[str, list[float]] = {k: [] for k in ("watermark", "mp4", "sign_mp4", "sign_jpeg", "verify", "decode")}
    for n in range(shots):
        base = photos[n % len(photos)]
        clip = np.stack([np.roll(base, 2 * t, axis=1) for t in range(24)])
        wid = watermark_id("bench", "story", n, "hash")
        manifest = ShotManifest(story_id="story", shot_index=n, input_hash="hash", prompt="p", generator="bench")
        t = time.perf_counter()
        marked = embed_frames(clip, wid)
        rows["watermark"].append(time.perf_counter() - t)
        video, jpeg = tmp / f"shot_{n}.mp4", tmp / f"shot_{n}.keyframe_0.jpg"
        t = time.perf_counter()
        write_mp4(video, marked, fps=12)
        rows["mp4"].append(time.perf_counter() - t)
        from PIL import Image

        Image.fromarray(marked[0]).save(jpeg, quality=92)
        definition = shot_definition(manifest, video.name, {}, {"store": "bench", "library": "bench"})
        t = time.perf_counter()
        sign_file(video, definition, identity, refs)
        rows["sign_mp4"].append(time.perf_counter() - t)
        t = time.perf_counter()
        sign_file(jpeg, {**definition, "title": jpeg.name}, identity, refs)
        rows["sign_jpeg"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assert read_credentials(video).state == "valid"
        rows["verify"].append(time.perf_counter() - t)
        t = time.perf_counter()
        found = decode_frames(read_frames(video))
        rows["decode"].append(time.perf_counter() - t)
        assert wid in found, (n, found)
    return {f"{k}_ms": round(1000 * statistics.median(v), 1) for k, v in rows.items()}


def decode_costs(frames: dict[str, np.ndarray], photos: int = 6) -> dict[str, float]:
    """Median decode ms per 1280x720 frame over photos: marked, cropped at an odd offset, unmarked;
    wall time and this process's CPU time (the CPU figure holds when other work shares the machine)."""
    import cv2

    from continuity.provenance.watermark import decode_image, embed_image

    rows: dict[str, list[float]] = {}
    for name in PHOTOS[:photos]:
        frame = cv2.resize(frames[name], (1280, 720), interpolation=cv2.INTER_CUBIC)
        marked = embed_image(frame, "1f0c9a2b")
        cases = {"marked": (marked, "1f0c9a2b"), "cropped": (marked[37:685, 61:1213], "1f0c9a2b"),
                 "unmarked": (frame, None)}  # fmt: skip
        for case, (image, expected) in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            found = decode_image(image)
            rows.setdefault(f"{case}_ms", []).append(time.perf_counter() - wall)
            rows.setdefault(f"{case}_cpu_ms", []).append(time.process_time() - cpu)
            assert found == expected, (name, case, found)
    return {k: round(1000 * statistics.median(v), 1) for k, v in rows.items()}


def false_ids(stack: np.ndarray) -> dict[str, object]:
    """Ids read from unmarked frames, their odd-offset crops and half-size copies (should be none)."""
    from continuity.provenance.survival import crop_10_offset, half_size
    from continuity.provenance.watermark import (
        MAX_TRIES_PER_IMAGE,
        READINGS_PER_IMAGE,
        TRIES_PER_READING,
        decode_image,
        false_match_bound,
    )

    images = [*stack, *crop_10_offset(stack), *half_size(stack)]
    found = [wid for wid in (decode_image(image) for image in images) if wid is not None]
    return {
        "unmarked_images_read": len(images),
        "false_ids": found,
        "check_bits": 32,
        "readings_per_image_max": READINGS_PER_IMAGE,
        "checks_per_reading": TRIES_PER_READING,
        "checks_per_image_max": MAX_TRIES_PER_IMAGE,
        "false_id_bound_per_image": float(f"{false_match_bound(1):.3g}"),
        "false_id_bound_per_video_16_frames": float(f"{false_match_bound(16, videos=1):.3g}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=8)
    args = parser.parse_args()
    from continuity.provenance.survival import survival_rates
    from continuity.provenance.watermark import PAYLOAD_BITS, SCALES, TILE, embed_frames

    frames = frames_set()
    stack = np.stack(list(frames.values()))
    with tempfile.TemporaryDirectory() as tmp:
        costs = shot_costs(frames, args.shots, Path(tmp))
    reading = {"frame": [1280, 720], **decode_costs(frames), **false_ids(stack)}
    t = time.perf_counter()
    rates = survival_rates(stack, "1f0c9a2b")
    marked = embed_frames(stack, "1f0c9a2b")
    psnr = [
        10 * np.log10(255**2 / max(np.mean((m.astype(float) - f) ** 2), 1e-9))
        for m, f in zip(marked, stack, strict=True)
    ]
    result = {
        "command": "python benchmarks/bench_provenance.py " + " ".join(sys.argv[1:]),
        "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "uncommitted_changes": bool(subprocess.run(["git", "status", "--porcelain", "--", "continuity/provenance",
                                                    "benchmarks/bench_provenance.py"], capture_output=True, text=True,
                                                   cwd=ROOT).stdout.strip()),
        "machine": {"python": platform.python_version(), "platform": platform.platform(terse=True),
                    "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 1)},
        "shot": {"frames": 24, "size": list(SIZE), "fps": 12, "shots_timed": args.shots, **costs},
        "survival": {
            "frames": len(stack),
            "sources": list(frames),
            "rates": {k: round(v, 3) for k, v in rates.items()},
            "seconds": round(time.perf_counter() - t, 1),
        },
        "watermark": {"method": "invisible-watermark dwtDct (vectorised), payload tiled on 8x8 blocks",
                      "scales": list(SCALES), "bits": PAYLOAD_BITS, "tile_blocks": [TILE, TILE],
                      "psnr_db_mean": round(float(np.mean(psnr)), 1), "psnr_db_min": round(float(np.min(psnr)), 1)},
        "reading": reading,
        "notes": [
            "signing: c2pa-python with a throwaway CA + end-entity EC P-256 chain (es256), no time-stamp authority",
            "payload: 32-bit id + CRC-32 (salted) check; the reader tries the 64 offsets of the 8-pixel block grid "
            "(the image's own first, then the 4 whose values sit closest to the quantiser lattice), the 64 cyclic "
            "shifts of the tile, plain and inverted, with up to 2 of the 4 least certain bits repaired",
            "false_id_bound_*: union bound, checks evaluated x 2^-32; the store lookup screens what remains",
            "previous layout (raster bit order, 48 bits with CRC-16; commit ca496f7): crop_10 0.0, jpeg_75 0.958, "
            "half_size 1.0, mp4_reencode 0.875",
            "not searched for: a copy rescaled by a factor other than 1/2, rotated, or cropped and then rescaled",
        ],
    }  # fmt: skip
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
