"""The story report: one self-contained ``report.html`` with its images in a folder beside it.

No external CSS, JS or fonts: the report opens offline and from an archive. Every piece of user
text (titles, prompts, entity names, reasons) goes through :func:`html.escape`, and every link
through :func:`urllib.parse.quote`, so a prompt holding ``<script>`` stays text and a path cannot
become a ``javascript:`` URL. Image files get names we make (shot_003_kf_1.jpg), never names
taken from user text.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from memstore.files import publish

from .provenance import BlueprintUse
from .video import contact_sheet

ImageLike = np.ndarray | Image.Image | str | os.PathLike
ASSETS = "report_files"


@dataclass
class ReportImage:
    image: ImageLike
    caption: str = ""


@dataclass
class ShotReport:
    index: int  # global, 0-based
    prompt: str
    scene: int | None = None
    shot_in_scene: int | None = None
    cut: bool = True
    enriched_prompt: str | None = None
    video: str | os.PathLike | None = None  # the shot's MP4
    blueprints: Sequence[BlueprintUse | Mapping[str, Any]] = ()
    memory: Sequence[ReportImage] = ()  # memory keyframes that conditioned the shot, with reasons
    keyframes: Sequence[ReportImage] = ()  # keyframes extracted from the shot
    seed: int | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: Sequence[str] = ()
    guard: Mapping[str, Any] | None = None  # the continuity guard's verdict on the kept attempt
    attempts: Sequence[Mapping[str, Any]] = ()

    @classmethod
    def from_manifest(
        cls,
        manifest: Any,
        manifest_dir: str | os.PathLike | None = None,
        keyframes: Sequence[ReportImage] = (),
        memory: Sequence[ReportImage] = (),
        cut: bool = True,
    ) -> ShotReport:
        """A shot section from a :class:`continuity.provenance.ShotManifest`; its first video
        output (path relative to ``manifest_dir``) becomes the shot's link."""
        video = next((o.path for o in manifest.outputs if o.kind == "video"), None)
        if video is not None and manifest_dir is not None and not Path(video).is_absolute():
            video = str(Path(manifest_dir) / video)
        return cls(
            index=manifest.shot_index,
            prompt=manifest.prompt,
            scene=manifest.scene_index,
            shot_in_scene=manifest.shot_in_scene,
            cut=cut,
            enriched_prompt=manifest.enriched_prompt,
            video=video,
            blueprints=list(manifest.blueprints),
            memory=memory,
            keyframes=keyframes,
            seed=manifest.seed,
            timings=dict(manifest.timings),
            notes=list(manifest.notes),
            guard=getattr(manifest, "guard", None),
            attempts=list(getattr(manifest, "attempts", None) or []),
        )


# --- helpers -------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return Image.fromarray(np.asarray(image)).convert("RGB")


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


class _Assets:
    """Writes images next to the report (or inlines them as data URIs) and returns their src."""

    def __init__(self, out_dir: Path, inline: bool, thumb: int) -> None:
        self.out_dir, self.inline, self.thumb = out_dir, inline, thumb
        self.dir = out_dir / ASSETS
        if not inline:
            self.dir.mkdir(parents=True, exist_ok=True)

    def src(self, image: ImageLike, name: str, max_side: int | None = None, fmt: str = "JPEG") -> str:
        pil = _pil(image)
        side = max_side or self.thumb
        if max(pil.size) > side:
            pil.thumbnail((side, side))
        ext = "jpg" if fmt == "JPEG" else "png"
        if self.inline:
            buf = io.BytesIO()
            pil.save(buf, format=fmt, quality=88)
            mime = "image/jpeg" if fmt == "JPEG" else "image/png"
            return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
        pil.save(self.dir / f"{name}.{ext}", format=fmt, quality=88)
        return quote(f"{ASSETS}/{name}.{ext}")


def _link(out_dir: Path, target: str | os.PathLike) -> str:
    p = Path(target)
    try:
        rel = os.path.relpath(p.resolve(), out_dir.resolve())
    except ValueError:  # another drive on Windows
        rel = str(p.resolve())
    # quote with only '/' safe: ':' becomes %3A, so no path can turn into a URL scheme
    return quote(Path(rel).as_posix(), safe="/")


# --- sections ------------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f5f7;color:#1d1d1f}
header{background:#1d1d1f;color:#f5f5f7;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}
header .meta{opacity:.75}
main{padding:24px 32px;max-width:1400px;margin:auto}
section{background:#fff;border-radius:10px;padding:16px 20px;margin-bottom:20px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e5e5ea;vertical-align:top}
th{font-weight:600;color:#6e6e73}
.totals{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:12px}
.total{background:#f5f5f7;border-radius:8px;padding:10px}
.total b{display:block;font-size:20px}
.sheets{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:16px}
.sheets img{max-width:100%;border-radius:6px}
.shot{display:grid;grid-template-columns:minmax(260px,1fr) 2fr;gap:20px}
.prompt{white-space:pre-wrap;background:#f5f5f7;border-radius:6px;padding:8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
figure{margin:0}
figure img{width:100%;border-radius:6px;display:block}
figcaption{font-size:12px;color:#6e6e73}
.tag{display:inline-block;background:#e8f0fe;color:#1a4fb4;border-radius:4px;padding:0 6px;margin-right:4px;font-size:12px}
.cut{background:#fde8e8;color:#a01d1d}
.bad{color:#a01d1d;font-weight:600}
video{width:100%;border-radius:6px;background:#000}
.muted{color:#6e6e73}
"""


def _metrics_section(metrics: Any) -> str:
    if metrics is None:
        return ""
    data = metrics.to_json() if hasattr(metrics, "to_json") else dict(metrics)
    overall = [
        ("CLIP-I across shots", data.get("clip_i")),
        ("Face: reference → shot", data.get("face_ref")),
        ("Face: shot → shot", data.get("face_shot")),
        ("Character count match (OCCM)", data.get("occm")),
    ]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_fmt(v, 2 if 'OCCM' in k else 3))}</td></tr>" for k, v in overall)
    ent_rows = ""
    for name, ent in (data.get("entities") or {}).items():
        ent_rows += (
            f"<tr><td>{_e(name)}</td><td>{_e(', '.join(str(s) for s in ent.get('shots', [])))}</td>"
            f"<td>{_e(_fmt(ent.get('clip_i')))}</td><td>{_e(ent.get('clip_i_pairs', 0))}</td>"
            f"<td>{_e(_fmt(ent.get('face_ref')))}</td><td>{_e(_fmt(ent.get('face_shot')))}</td>"
            f"<td>{_e(_fmt(ent.get('faces_found')))}</td></tr>"
        )
    notes = "".join(f"<p class='muted'>{_e(n)}</p>" for n in data.get("notes") or [])
    per_entity = ""
    if ent_rows:
        per_entity = (
            "<h3>Per entity</h3><table><tr><th>Entity</th><th>Shots</th><th>CLIP-I</th><th>Pairs</th>"
            f"<th>Face ref</th><th>Face shot</th><th>Faces found</th></tr>{ent_rows}</table>"
        )
    return f"<section id='metrics'><h2>Consistency</h2><table>{rows}</table>{per_entity}{notes}</section>"


def _sheets_section(entity_sheets: Mapping[str, Mapping[int, Sequence[ImageLike]]], assets: _Assets) -> str:
    if not entity_sheets:
        return ""
    cards = []
    for i, (name, per_shot) in enumerate(entity_sheets.items()):
        images, labels = [], []
        for shot, imgs in sorted(per_shot.items()):
            for img in imgs:
                images.append(_pil(img))
                labels.append(f"shot {shot}")
        if not images:
            continue
        sheet = contact_sheet(images, cols=min(6, len(images)), thumb=(128, 96), labels=labels)
        src = assets.src(sheet, f"entity_{i:03d}", max_side=max(sheet.size), fmt="PNG")
        shots = ", ".join(str(s) for s in sorted(per_shot))
        cards.append(
            f"<div><h3>{_e(name)}</h3><img src='{src}' alt='{_e(name)} across shots'>"
            f"<div class='muted'>{len(images)} images in shots {_e(shots)}</div></div>"
        )
    return f"<section id='entities'><h2>Entities across shots</h2><div class='sheets'>{''.join(cards)}</div></section>"


def _figures(items: Iterable[ReportImage], prefix: str, assets: _Assets) -> str:
    figs = []
    for j, item in enumerate(items):
        src = assets.src(item.image, f"{prefix}_{j}")
        figs.append(
            f"<figure><img src='{src}' alt='{_e(item.caption)}'><figcaption>{_e(item.caption)}</figcaption></figure>"
        )
    return f"<div class='grid'>{''.join(figs)}</div>" if figs else "<p class='muted'>none</p>"


def _blueprints(blueprints: Sequence[BlueprintUse | Mapping[str, Any]]) -> str:
    if not blueprints:
        return "<p class='muted'>none</p>"
    rows = []
    for b in blueprints:
        d = b.model_dump() if isinstance(b, BlueprintUse) else dict(b)
        reasons = "".join(f"<span class='tag'>{_e(r)}</span>" for r in d.get("reasons") or [])
        rows.append(
            f"<tr><td>{_e(d.get('name'))}</td><td>{_e(d.get('kind'))}</td><td>{_e(_fmt(d.get('score')))}</td><td>{reasons}</td></tr>"
        )
    return f"<table><tr><th>Blueprint</th><th>Kind</th><th>Score</th><th>Why</th></tr>{''.join(rows)}</table>"


def _shot_section(shot: ShotReport, out_dir: Path, assets: _Assets) -> str:
    where = f"scene {shot.scene}, shot {shot.shot_in_scene}" if shot.scene is not None else ""
    cut = "<span class='tag cut'>cut</span>" if shot.cut else "<span class='tag'>continues</span>"
    video = ""
    if shot.video is not None:
        href = _link(out_dir, shot.video)
        video = f"<video controls preload='none' src='{href}'></video><p><a href='{href}'>{_e(Path(shot.video).name)}</a></p>"
    enriched = ""
    if shot.enriched_prompt and shot.enriched_prompt != shot.prompt:
        enriched = f"<h3>Enriched prompt</h3><div class='prompt'>{_e(shot.enriched_prompt)}</div>"
    facts = []
    if shot.seed is not None:
        facts.append(f"seed {_e(shot.seed)}")
    facts += [f"{_e(k)} {v:.2f}s" for k, v in shot.timings.items()]
    notes = "".join(f"<p class='muted'>{_e(n)}</p>" for n in shot.notes)
    prefix = f"shot_{shot.index:04d}"
    return (
        f"<section class='shot-card' id='shot-{shot.index}'><h2>Shot {shot.index + 1} "
        f"<span class='muted'>{_e(where)}</span> {cut}</h2><div class='shot'><div>{video}"
        f"<h3>Prompt</h3><div class='prompt'>{_e(shot.prompt)}</div>{enriched}"
        f"<p class='muted'>{' · '.join(facts)}</p>{notes}</div><div>"
        f"<h3>Retrieved blueprints</h3>{_blueprints(shot.blueprints)}{_guard(shot)}"
        f"<h3>Memory keyframes used</h3>{_figures(shot.memory, prefix + '_mem', assets)}"
        f"<h3>Keyframes extracted</h3>{_figures(shot.keyframes, prefix + '_kf', assets)}"
        f"</div></div></section>"
    )


def _guard_row(check: Mapping[str, Any]) -> str:
    score = check.get("score")
    shown = "" if score is None else f"{score:.3f}"
    failed = check.get("outcome") not in ("pass", "unchecked")
    return (
        f"<tr><td>{_e(check.get('name'))}</td><td>{_e(check.get('method'))}</td><td>{shown}</td>"
        f"<td>{_e(check.get('threshold'))}</td><td class='{'bad' if failed else ''}'>{_e(check.get('outcome'))}</td></tr>"
    )


def _guard(shot: ShotReport) -> str:
    """The continuity guard's scores per entity, which entity failed, and every attempt."""
    if not shot.guard:
        return ""
    verdict = "passed" if shot.guard.get("passed") else "FAILED: its keyframes were kept out of memory"
    rows = "".join(_guard_row(c) for c in shot.guard.get("checks", []))
    tries = "; ".join(
        f"attempt {a.get('attempt')}: seed {a.get('seed')}, "
        f"{'passed' if (a.get('verdict') or {}).get('passed') else 'failed'}"
        for a in shot.attempts
    )
    return (
        f"<h3>Continuity guard</h3><p>{_e(verdict)}</p><table><tr><th>entity</th><th>check</th><th>score</th>"
        f"<th>threshold</th><th>outcome</th></tr>{rows}</table><p class='muted'>{_e(tries)}</p>"
    )


# --- entry point ---------------------------------------------------------------------------------


def write_report(
    out_dir: str | os.PathLike[str],
    story: Any,
    shots: Sequence[ShotReport],
    metrics: Any = None,
    entity_sheets: Mapping[str, Mapping[int, Sequence[ImageLike]]] | None = None,
    generator: str | None = None,
    inline_images: bool = False,
    thumb: int = 320,
) -> Path:
    """Write ``out_dir/report.html`` (images in ``out_dir/report_files/``, or inlined as data URIs
    with ``inline_images``) and return its path.

    ``story`` is a :class:`continuity.story.StoryScript` (or anything with ``id``/``title``);
    ``metrics`` a :class:`continuity.metrics.ConsistencyReport` or its ``to_json()`` dict;
    ``entity_sheets`` maps entity name -> shot index -> images of it in that shot.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assets = _Assets(out, inline_images, thumb)
    title = getattr(story, "title", "") or getattr(story, "id", "") or "Story"
    story_id = getattr(story, "id", "")
    overview = getattr(story, "overview", "")
    scenes = {s.scene for s in shots if s.scene is not None}
    totals = [
        ("shots", len(shots)),
        ("scenes", len(scenes) if scenes else len(getattr(story, "scenes", []) or [])),
        ("entities", len(entity_sheets or {})),
        ("keyframes", sum(len(s.keyframes) for s in shots)),
        ("blueprint uses", sum(len(s.blueprints) for s in shots)),
    ]
    seconds = sum(sum(s.timings.values()) for s in shots)
    if seconds:
        totals.append(("seconds", round(seconds, 1)))
    totals_html = "".join(f"<div class='total'><b>{_e(v)}</b>{_e(k)}</div>" for k, v in totals)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"<header><h1>{_e(title)}</h1><div class='meta'>story {_e(story_id)} · generator {_e(generator or '–')}"
        f" · {_e(created)}</div></header><main>"
        f"<section><div class='totals'>{totals_html}</div>"
        + (f"<p>{_e(overview)}</p>" if overview else "")
        + "</section>"
        + _metrics_section(metrics)
        + _sheets_section(entity_sheets or {}, assets)
        + "".join(_shot_section(s, out, assets) for s in shots)
        + "</main>"
    )
    html_text = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · continuity report</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    path = out / "report.html"
    fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html_text)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["ReportImage", "ShotReport", "write_report"]
