"""Drawn sample locations for the demo: deterministic PIL paintings, no files, no weights.

The demo's characters are real photos that ship in installed packages; locations are painted
here so the sample library needs nothing from outside.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    w, h = size
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    column = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return np.repeat(column, w, axis=1)


def harbor_at_dusk(size: tuple[int, int] = (768, 432), seed: int = 7) -> Image.Image:
    """A harbor at dusk: orange sky, a low sun, a dark sea with glints, a pier and moored boats."""
    rng = np.random.default_rng(seed)
    w, h = size
    horizon = int(h * 0.58)
    img = _gradient(size, (40, 36, 92), (252, 150, 80))
    sea = _gradient((w, h - horizon), (70, 62, 110), (14, 18, 40))
    img[horizon:] = sea
    canvas = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas, "RGBA")
    sx, sy, r = int(w * 0.68), horizon - int(h * 0.06), int(h * 0.09)
    for k in range(6, 0, -1):
        draw.ellipse([sx - r * k / 2.2, sy - r * k / 2.2, sx + r * k / 2.2, sy + r * k / 2.2], fill=(255, 200, 120, 18))
    draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 222, 160, 255))
    draw.rectangle([0, horizon, w, h], fill=(0, 0, 0, 0))
    for _ in range(140):  # glints on the water under the sun
        y = rng.integers(horizon + 2, h)
        x = sx + rng.normal(0, 12 + (y - horizon) * 0.5)
        length = rng.integers(6, 26)
        draw.line([x - length / 2, y, x + length / 2, y], fill=(255, 210, 150, int(rng.integers(60, 160))), width=1)
    for i in range(5):  # distant hills
        hx = w * (i / 4.0)
        draw.ellipse([hx - w * 0.25, horizon - h * 0.08, hx + w * 0.25, horizon + h * 0.05], fill=(46, 34, 70, 255))
    pier_y = int(h * 0.78)
    draw.polygon(
        [(0, pier_y), (int(w * 0.45), pier_y - 8), (int(w * 0.45), pier_y + 6), (0, pier_y + 26)],
        fill=(36, 24, 20, 255),
    )
    for x in range(10, int(w * 0.45), 34):
        draw.rectangle([x, pier_y - 6, x + 5, h], fill=(30, 20, 16, 255))
    for bx, scale in ((0.58, 1.0), (0.8, 0.7), (0.33, 0.55)):
        cx, cy = int(w * bx), int(horizon + h * 0.13 * scale + 10)
        bw = int(90 * scale)
        draw.polygon(
            [
                (cx - bw, cy),
                (cx + bw, cy),
                (cx + int(bw * 0.7), cy + int(18 * scale)),
                (cx - int(bw * 0.7), cy + int(18 * scale)),
            ],
            fill=(22, 16, 26, 255),
        )
        draw.line([cx, cy, cx, cy - int(110 * scale)], fill=(22, 16, 26, 255), width=max(2, int(3 * scale)))
        draw.polygon(
            [
                (cx + 3, cy - int(104 * scale)),
                (cx + 3, cy - int(12 * scale)),
                (cx + int(60 * scale), cy - int(14 * scale)),
            ],
            fill=(240, 226, 210, 200),
        )
    return canvas.filter(ImageFilter.SMOOTH)


def forest_clearing(size: tuple[int, int] = (768, 432), seed: int = 11) -> Image.Image:
    """A forest clearing at noon: green light, layered pines, a path and sun rays."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = _gradient(size, (170, 214, 236), (214, 232, 200))
    canvas = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas, "RGBA")
    ground = int(h * 0.66)
    draw.rectangle([0, ground, w, h], fill=(86, 128, 60, 255))
    for layer, (color, count, height) in enumerate(
        (((92, 130, 110), 22, 0.42), ((54, 96, 70), 16, 0.55), ((26, 60, 40), 10, 0.72))
    ):
        for _ in range(count):
            x = rng.uniform(-0.05, 1.05) * w
            if 0.35 * w < x < 0.65 * w and layer == 2:
                continue  # keep the clearing open in front
            th = height * h * rng.uniform(0.8, 1.15)
            tw = th * 0.32
            base = ground + layer * 6
            draw.rectangle([x - tw * 0.06, base - th * 0.15, x + tw * 0.06, base + 4], fill=(70, 48, 30, 255))
            for k in range(4):
                top = base - th + k * th * 0.18
                half = tw * (0.35 + k * 0.2)
                draw.polygon([(x, top), (x - half, top + th * 0.38), (x + half, top + th * 0.38)], fill=color + (255,))
    draw.polygon([(w * 0.44, ground), (w * 0.56, ground), (w * 0.78, h), (w * 0.22, h)], fill=(176, 150, 104, 255))
    for i in range(7):  # god rays
        x0 = w * (0.25 + 0.08 * i)
        draw.polygon(
            [(x0, 0), (x0 + 26, 0), (x0 + 90 + 30 * math.sin(i), ground), (x0 + 40, ground)], fill=(255, 250, 210, 26)
        )
    for _ in range(260):  # grass and flowers
        x, y = rng.uniform(0, w), rng.uniform(ground + 4, h)
        draw.line([x, y, x + rng.normal(0, 2), y - rng.uniform(4, 12)], fill=(60, 110, 44, 255), width=1)
        if rng.random() < 0.08:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(250, 236, 120, 255))
    return canvas.filter(ImageFilter.SMOOTH)


LOCATIONS = {"harbor": harbor_at_dusk, "forest": forest_clearing}
