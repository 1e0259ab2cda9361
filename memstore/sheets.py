"""Turnaround sheets: one image showing an entity from several views side by side (front,
three-quarter, profile, back), split into one labelled reference per view.

Character sheets are drawn or rendered on a plain background with gaps between the poses, so the
split looks for those gaps first: columns (or rows of a grid) where every pixel is close to the
sheet's border colour. When the gaps do not give exactly one panel per view (poses that touch,
a textured background), it falls back to equal widths, which is how sheets are laid out anyway."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .images import ImageInput, load_image
from .validation import View, clean_view

MAX_VIEWS = 12
# a pixel within this RGB distance of the border colour is background
BACKGROUND_TOLERANCE = 24.0
# a column is a gap when at least this share of its pixels is background
GAP_SHARE = 0.985
MIN_PANEL_SHARE = 0.04  # a panel narrower than this share of the sheet is a speck, not a pose


@dataclass(frozen=True)
class Panel:
    """One view cut from a sheet: its pixels, its label, and where it was (x0, y0, x1, y1 in pixels)."""

    image: Image.Image
    view: View
    box: tuple[int, int, int, int]
    found_by: str  # "gaps" (cut at background gaps) or "equal" (equal widths)


def split_sheet(sheet: ImageInput, views: Sequence[str], *, rows: int = 1) -> list[Panel]:
    """Cut ``sheet`` into ``len(views)`` panels, row by row, left to right, labelled in that order."""
    labels = _labels(views, rows)
    image = load_image(sheet).to_pil()
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    per_row = len(labels) // rows
    background = _border_colour(pixels)
    row_spans = _spans(_background_share(pixels, background, axis=1), rows)
    panels = []
    for r, (y0, y1) in enumerate(row_spans[0]):
        band = pixels[y0:y1]
        col_spans, how = _spans(_background_share(band, background, axis=0), per_row)
        for c, (x0, x1) in enumerate(col_spans):
            box = (x0, y0, x1, y1)
            found = "gaps" if how == "gaps" and row_spans[1] == "gaps" else "equal"
            panels.append(Panel(image.crop(box), labels[r * per_row + c], box, found))
    return panels


@dataclass(frozen=True)
class SheetImages:
    """A sheet's panels as inputs of ``Library.prepare`` / ``add_images`` (images, names, views),
    so that a sheet and other images register in one all-or-nothing write."""

    images: list[ImageInput]
    names: list[str | None]
    views: list[str | None]

    def __add__(self, other: SheetImages) -> SheetImages:
        return SheetImages(self.images + other.images, self.names + other.names, self.views + other.views)


def sheet_images(sheet: ImageInput, views: Sequence[str], *, rows: int = 1, name: str | None = None) -> SheetImages:
    """Split ``sheet`` and name each panel ``<sheet file name>#<view>``."""
    import os

    base = name or (os.path.basename(os.fspath(sheet)) if isinstance(sheet, (str, os.PathLike)) else "sheet")
    panels = split_sheet(sheet, views, rows=rows)
    return SheetImages([p.image for p in panels], [f"{base}#{p.view}" for p in panels], [str(p.view) for p in panels])


def _labels(views: Sequence[str], rows: int) -> list[View]:
    if isinstance(views, str):
        views = [v for v in views.split(",") if v.strip()]
    labels = [clean_view(v) for v in views]
    if not labels or len(labels) > MAX_VIEWS:
        raise InvalidInputError(f"a sheet needs 1 to {MAX_VIEWS} view labels, got {len(labels)}")
    if not isinstance(rows, int) or rows < 1 or len(labels) % rows:
        raise InvalidInputError(f"{len(labels)} views do not fill {rows} rows evenly; give rows x columns labels")
    return [v for v in labels if v is not None]


def _border_colour(pixels: np.ndarray) -> np.ndarray:
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(edge, axis=0)


def _background_share(pixels: np.ndarray, background: np.ndarray, axis: int) -> np.ndarray:
    """Per column (axis 0) or per row (axis 1): the share of pixels close to the background."""
    close = np.linalg.norm(pixels - background, axis=2) <= BACKGROUND_TOLERANCE
    return close.mean(axis=axis)


def _spans(share: np.ndarray, count: int) -> tuple[list[tuple[int, int]], str]:
    """``count`` spans along one axis: cut at background gaps when they give exactly ``count``
    panels, else equal parts. Each span is widened to the middle of the gaps beside it."""
    length = len(share)
    if count == 1:
        return [(0, length)], "gaps"
    content = share < GAP_SHARE
    runs = _runs(content)
    runs = [(a, b) for a, b in runs if b - a >= MIN_PANEL_SHARE * length]
    if len(runs) != count:
        edges = [round(i * length / count) for i in range(count + 1)]
        return [(edges[i], edges[i + 1]) for i in range(count)], "equal"
    cuts = [0] + [(runs[i][1] + runs[i + 1][0]) // 2 for i in range(count - 1)] + [length]
    return [(cuts[i], cuts[i + 1]) for i in range(count)], "gaps"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    changes = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(changes[::2], changes[1::2], strict=True)]


__all__ = ["MAX_VIEWS", "Panel", "SheetImages", "sheet_images", "split_sheet"]
