"""The default generator: storyboard/animatic frames composed from stored references, no weights.

A shot becomes: the location's reference as background (cover-fit; a seeded gradient when there is
none), one rounded card per character (face-cropped when the reference has a face box) placed
left-to-right in cast order with a name label, a slow Ken-Burns pan/zoom over the frames, the
prompt as a caption bar, and a strip of the memory keyframes the shot remembers. Only PIL and
numpy; the same inputs and seed give byte-identical frames.
"""

from __future__ import annotations

import colorsys
import functools
import textwrap
import zlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .base import (
    ConditionedEntity,
    Conditioning,
    GeneratorAdapter,
    ShotOutput,
    ShotSpec,
    face_crop,
    ordered_characters,
    reference_image,
    regions_for,
)

FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "DejaVuSans.ttf",
)
BOLD_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "DejaVuSans-Bold.ttf",
)


@functools.lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    """DejaVu Sans when installed, else Pillow's scalable default font."""
    for path in BOLD_PATHS if bold else FONT_PATHS:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default
        return ImageFont.load_default()


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover (width, height) and centre-crop: no letterboxing."""
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((w, h), Image.LANCZOS)
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def gradient(width: int, height: int, key: int) -> Image.Image:
    """A calm two-tone vertical gradient with a vignette; hue chosen by ``key``."""
    hue = (key % 360) / 360.0
    top = np.array(colorsys.hls_to_rgb(hue, 0.32, 0.35)) * 255
    bottom = np.array(colorsys.hls_to_rgb((hue + 0.08) % 1.0, 0.12, 0.30)) * 255
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = top[None, None, :] * (1 - t) + bottom[None, None, :] * t
    img = np.broadcast_to(img, (height, width, 3)).copy()
    return Image.fromarray(vignette(img).astype(np.uint8))


def vignette(img: np.ndarray, strength: float = 0.35) -> np.ndarray:
    h, w = img.shape[:2]
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    falloff = 1.0 - strength * np.clip((x**2 + y**2) / 2.0, 0, 1)
    return np.clip(img.astype(np.float32) * falloff[..., None], 0, 255)


def rounded_card(
    image: Image.Image,
    width: int,
    height: int,
    *,
    radius: int,
    border: int,
    border_color: tuple[int, int, int] = (245, 245, 240),
) -> Image.Image:
    """An RGBA card: the image cover-fit inside a light border with rounded corners."""
    card = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, width - 1, height - 1), radius=radius, fill=255)
    frame = Image.new("RGBA", (width, height), border_color + (255,))
    card.paste(frame, (0, 0), mask)
    inner_w, inner_h = max(1, width - 2 * border), max(1, height - 2 * border)
    inner = cover(image.convert("RGB"), inner_w, inner_h)
    inner_mask = Image.new("L", (inner_w, inner_h), 0)
    ImageDraw.Draw(inner_mask).rounded_rectangle(
        (0, 0, inner_w - 1, inner_h - 1), radius=max(0, radius - border), fill=255
    )
    card.paste(inner, (border, border), inner_mask)
    return card


def paste_with_shadow(canvas: Image.Image, card: Image.Image, xy: tuple[int, int], blur: int) -> None:
    """Alpha-composite ``card`` at ``xy`` over a soft drop shadow."""
    x, y = xy
    pad = blur * 3
    shadow = Image.new("RGBA", (card.width + 2 * pad, card.height + 2 * pad), (0, 0, 0, 0))
    alpha = card.getchannel("A").point(lambda a: int(a * 0.55))
    shadow.paste((0, 0, 0, 255), (pad, pad), alpha)
    shadow = shadow.filter(ImageFilter.GaussianBlur(blur))
    canvas.alpha_composite(shadow, (x - pad + blur // 2, y - pad + blur))
    canvas.alpha_composite(card, (x, y))


def pill(
    draw: ImageDraw.ImageDraw,
    centre_x: int,
    top: int,
    text: str,
    fnt: Any,
    *,
    fill: tuple[int, ...] = (20, 20, 24, 200),
    color: tuple[int, ...] = (250, 250, 250, 255),
) -> None:
    """A rounded label centred at ``centre_x`` whose top edge is ``top``."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=fnt)
    tw, th = x1 - x0, y1 - y0
    pad_x, pad_y = max(4, th // 2), max(2, th // 3)
    box = (centre_x - tw // 2 - pad_x, top, centre_x + tw // 2 + pad_x, top + th + 2 * pad_y)
    draw.rounded_rectangle(box, radius=(box[3] - box[1]) // 2, fill=fill)
    draw.text((centre_x - tw // 2 - x0, top + pad_y - y0), text, font=fnt, fill=color)


def wrap(text: str, fnt: Any, max_width: int, draw: ImageDraw.ImageDraw, max_lines: int) -> list[str]:
    """Greedy word wrap by measured width; the last line ends with an ellipsis when cut."""
    words = " ".join(text.split()).split(" ")
    lines: list[str] = []
    line = ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=fnt) <= max_width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + " …", font=fnt) > max_width:
            last = last[:-1]
        lines[-1] = last.rstrip() + " …"
    return lines or [textwrap.shorten(text, 40)]


class AnimaticGenerator(GeneratorAdapter):
    """Storyboard frames from stored references; the default generator (no model weights).

    ``zoom`` is the Ken-Burns zoom over the shot (1.08 = 8 % closer at the end); ``max_characters``
    bounds the cards; ``show_memory`` draws the remembered keyframes as thumbnails.
    """

    name = "animatic"

    def __init__(
        self,
        *,
        zoom: float = 1.08,
        max_characters: int = 5,
        show_memory: bool = True,
        show_caption: bool = True,
        max_memory_thumbs: int = 5,
        caption_lines: int = 2,
    ):
        self.zoom = float(zoom)
        self.max_characters = int(max_characters)
        self.show_memory = bool(show_memory)
        self.show_caption = bool(show_caption)
        self.max_memory_thumbs = int(max_memory_thumbs)
        self.caption_lines = int(caption_lines)

    @property
    def model_id(self) -> str:
        return "continuity/animatic-v1"

    # --- prepare: decide and decode -------------------------------------------------------------
    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        chars = ordered_characters(result)[: self.max_characters]
        regions = regions_for(shot, chars)
        entities: list[ConditionedEntity] = []
        images: dict[str, Any] = {}
        location = result.location
        if location is not None:
            ref = next((r for r in location.references if r.image is not None), None)
            entities.append(
                ConditionedEntity(
                    location.entity.name,
                    location.entity.id,
                    "location",
                    (ref.id,) if ref else (),
                    description=location.entity.description,
                )
            )
            if ref is not None:
                images["background"] = reference_image(ref)
        for hit, region in zip(chars, regions, strict=False):
            ref = next((r for r in hit.references if r.image is not None), None)
            entities.append(
                ConditionedEntity(
                    hit.entity.name,
                    hit.entity.id,
                    "character",
                    (ref.id,) if ref else (),
                    region=region,
                    description=hit.entity.description,
                )
            )
            if ref is not None:
                images[f"character:{hit.entity.id}"] = face_crop(ref)
        memory = [r for r in result.memory if r.image is not None][: self.max_memory_thumbs]
        for r in memory:
            images[f"memory:{r.id}"] = reference_image(r)
        return Conditioning(
            self.name,
            shot.prompt,
            shot.negative_prompt,
            entities=entities,
            images=images,
            memory_ids=[r.id for r in memory],
            options={"zoom": self.zoom, "explicit_regions": bool(shot.regions)},
        )

    # --- generate: compose and pan ---------------------------------------------------------------
    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        seed = shot.seed if seed is None else int(seed)
        rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(conditioning.prompt.encode())])
        # The scene is drawn larger than the frame so the pan never shows an edge.
        sw, sh = int(np.ceil(shot.width * self.zoom * 1.04)), int(np.ceil(shot.height * self.zoom * 1.04))
        scene = self._scene(conditioning, sw, sh, rng, explicit=bool(shot.regions))
        overlay = self._overlay(shot, conditioning)
        frames = self._ken_burns(scene, overlay, shot, rng)
        return ShotOutput(frames, shot.fps, self.metadata(shot, conditioning, seed, size=[shot.width, shot.height]))

    def _scene(
        self, cond: Conditioning, width: int, height: int, rng: np.random.Generator, explicit: bool
    ) -> Image.Image:
        bg = cond.images.get("background")
        if bg is not None:
            canvas = Image.fromarray(vignette(np.asarray(cover(bg, width, height)), 0.25).astype(np.uint8))
        else:
            canvas = gradient(width, height, int(rng.integers(0, 360)))
        canvas = canvas.convert("RGBA")
        chars = [e for e in cond.entities if e.kind == "character"]
        if not chars:
            return canvas
        n = len(chars)
        # Cards fill the lower middle; shrink them when many characters share the frame.
        card_h = int(height * (0.5 if n <= 3 else 0.42))
        card_w = int(card_h * 0.75)
        gap = max(6, width // 60)
        total = n * card_w + (n - 1) * gap
        if total > width * 0.9:
            card_w = int((width * 0.9 - (n - 1) * gap) / n)
            card_h = int(card_w / 0.75)
            total = n * card_w + (n - 1) * gap
        radius, border = max(4, card_w // 12), max(2, card_w // 40)
        label_font = font(max(10, height // 26), bold=True)
        draw = ImageDraw.Draw(canvas)
        top = int(height * 0.42 - card_h * 0.5)  # card and label end above the caption bar
        for i, ent in enumerate(chars):
            if explicit and ent.region is not None:
                x0, y0, x1, y1 = ent.region  # honour the shot's layout: centre the card on its box
                cx, cy = int((x0 + x1) / 2 * width), int((y0 + y1) / 2 * height)
                x, y = cx - card_w // 2, cy - card_h // 2
            else:
                x = int((width - total) / 2) + i * (card_w + gap)
                y = top
            x = min(max(0, x), width - card_w)
            y = min(max(0, y), height - card_h)
            portrait = cond.images.get(f"character:{ent.entity_id}")
            if portrait is None:
                portrait = _silhouette(card_w, card_h, ent.name)
            card = rounded_card(portrait, card_w, card_h, radius=radius, border=border)
            paste_with_shadow(canvas, card, (x, y), blur=max(2, card_w // 24))
            pill(draw, x + card_w // 2, min(height - 4, y + card_h + max(4, card_h // 30)), ent.name, label_font)
        return canvas

    def _overlay(self, shot: ShotSpec, cond: Conditioning) -> Image.Image:
        """Static layer over the moving scene: shot tag, memory strip, caption bar."""
        w, h = shot.width, shot.height
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        small = font(max(9, h // 30))
        if shot.shot_index is not None:
            tag = f"SHOT {shot.shot_index + 1}"
            x0, y0, x1, y1 = draw.textbbox((0, 0), tag, font=small)
            draw.rounded_rectangle((8, 8, 8 + (x1 - x0) + 12, 8 + (y1 - y0) + 8), radius=4, fill=(0, 0, 0, 150))
            draw.text((14 - x0, 12 - y0), tag, font=small, fill=(255, 255, 255, 235))
        if self.show_memory and cond.memory_ids:
            th = max(12, h // 8)
            tw = int(th * 16 / 9)
            x = w - 8 - tw
            for mid in reversed(cond.memory_ids):
                img = cond.images.get(f"memory:{mid}")
                if img is None or x < w // 3:
                    continue
                thumb = cover(img, tw, th).convert("RGBA")
                draw.rectangle((x - 1, 7, x + tw, 8 + th), outline=(255, 255, 255, 200))
                layer.alpha_composite(thumb, (x, 8))
                x -= tw + 4
            # the label sits left of the strip, not under it, where it would cover the cards
            x0, y0, x1, y1 = draw.textbbox((0, 0), "memory", font=small)
            lx, ly = x + tw - (x1 - x0) - 8, 8 + (th - (y1 - y0)) // 2
            draw.rounded_rectangle(
                (lx - 5, ly - 3, lx + (x1 - x0) + 5, ly + (y1 - y0) + 5), radius=4, fill=(0, 0, 0, 150)
            )
            draw.text((lx - x0, ly - y0 + 1), "memory", font=small, fill=(255, 255, 255, 220))
        if self.show_caption and cond.prompt:
            cap = font(max(10, h // 22))
            lines = wrap(cond.prompt, cap, int(w * 0.92), draw, self.caption_lines)
            line_h = draw.textbbox((0, 0), "Ag", font=cap)[3] + max(2, h // 120)
            bar_h = line_h * len(lines) + max(8, h // 30)
            bar = Image.new("RGBA", (w, bar_h), (0, 0, 0, 0))
            alpha = np.linspace(120, 200, bar_h, dtype=np.float32)[:, None].repeat(w, 1).astype(np.uint8)
            bar.putalpha(Image.fromarray(alpha))
            layer.alpha_composite(bar, (0, h - bar_h))
            y = h - bar_h + max(4, h // 60)
            for line in lines:
                lw = draw.textlength(line, font=cap)
                draw.text(((w - lw) / 2, y), line, font=cap, fill=(250, 250, 245, 255))
                y += line_h
        return layer

    def _ken_burns(
        self, scene: Image.Image, overlay: Image.Image, shot: ShotSpec, rng: np.random.Generator
    ) -> np.ndarray:
        """Crop a window that slides and zooms across the scene; direction drawn from the seed."""
        sw, sh = scene.size
        w, h = shot.width, shot.height
        zoom_in = bool(rng.integers(0, 2))
        z0, z1 = (1.0, self.zoom) if zoom_in else (self.zoom, 1.0)
        # Pan between two points; the window (w*s, h*s) with s = base/zoom always stays inside.
        base = min(sw / w, sh / h)
        start = rng.uniform(0.3, 0.7, size=2)
        end = np.clip(start + rng.uniform(-0.3, 0.3, size=2), 0.0, 1.0)
        scene_rgb = scene.convert("RGB")
        frames = np.empty((shot.num_frames, h, w, 3), dtype=np.uint8)
        for t in range(shot.num_frames):
            a = 0.0 if shot.num_frames == 1 else t / (shot.num_frames - 1)
            a = a * a * (3 - 2 * a)  # ease in and out
            s = base / (z0 + (z1 - z0) * a)
            cw, ch = w * s, h * s
            fx, fy = start + (end - start) * a
            left, top = fx * (sw - cw), fy * (sh - ch)
            frame = scene_rgb.resize((w, h), Image.BICUBIC, box=(left, top, left + cw, top + ch))
            frame = frame.convert("RGBA")
            frame.alpha_composite(overlay)
            frames[t] = np.asarray(frame.convert("RGB"))
        return frames


def _silhouette(width: int, height: int, name: str) -> Image.Image:
    """A placeholder portrait (head and shoulders) tinted by the name, for entities without images."""
    hue = (zlib.crc32(name.encode()) % 360) / 360.0
    bg = tuple(int(c * 255) for c in colorsys.hls_to_rgb(hue, 0.45, 0.30))
    fg = tuple(int(c * 255) for c in colorsys.hls_to_rgb(hue, 0.22, 0.25))
    img = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(img)
    r = width * 0.2
    cx, cy = width / 2, height * 0.42
    d.ellipse((cx - r, cy - r * 1.15, cx + r, cy + r * 1.15), fill=fg)
    d.ellipse((cx - width * 0.42, height * 0.68, cx + width * 0.42, height * 1.3), fill=fg)
    return img
