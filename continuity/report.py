"""The story report: one self-contained ``report.html`` with its images in a folder beside it.

No external CSS, JS or fonts: the report opens offline and from an archive. Every piece of user
text (titles, prompts, entity names, reasons) goes through :func:`html.escape`, and every link
through :func:`urllib.parse.quote`, so a prompt holding ``<script>`` stays text and a path cannot
become a ``javascript:`` URL. Image files get names we make (shot_003_kf_1.jpg), never names
taken from user text.

One rendering serves two places: :func:`write_report` (files beside the page) and the web app's
run view (:func:`render_run`, with :class:`ServedMedia`: images and videos by URL, fetched by the
page with its key). Shots are numbered from 1 wherever a person reads them (:func:`shot_number`);
indexes in JSON and file names stay 0-based.
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
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
from PIL import Image

from memstore.files import publish

from .provenance import BlueprintUse
from .video import contact_sheet

ImageLike = np.ndarray | Image.Image | str | os.PathLike
ASSETS = "report_files"
CSS_FILE = Path(__file__).parent / "templates" / "report.css"


def shot_number(index: int) -> int:
    """The number a person reads for the shot at 0-based ``index``: the one numbering of every
    heading, table and caption of the report and the web app."""
    return index + 1


@dataclass
class ReportImage:
    image: ImageLike | None = None
    caption: str = ""
    url: str | None = None  # where the web app fetches it (ServedMedia); the file report needs ``image``
    # the stored image it shows (a reference id): the file report writes each once, however many
    # shots remembered it (a long story's memory frames are its earlier keyframes, ten a shot)
    key: str | None = None


@dataclass
class ShotReport:
    index: int  # global, 0-based
    prompt: str
    scene: int | None = None
    shot_in_scene: int | None = None
    cut: bool = True
    enriched_prompt: str | None = None
    video: str | os.PathLike | None = None  # the shot's MP4
    video_url: str | None = None  # the web app's URLs of the MP4 and its poster frame (ServedMedia)
    poster_url: str | None = None
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


class Media(Protocol):
    """Where a rendered page finds its images and videos: ``attr`` is the attribute that carries
    the address (``src``, or ``data-src`` for a page that fetches them itself with its key)."""

    attr: str

    def image(self, item: ReportImage, name: str) -> str: ...

    def video(self, shot: ShotReport) -> tuple[str, str] | None: ...  # (video, poster frame)


class _Assets:
    """Writes images next to the report (or inlines them as data URIs) and returns their src."""

    attr = "src"

    def __init__(self, out_dir: Path, inline: bool, thumb: int) -> None:
        self.out_dir, self.inline, self.thumb = out_dir, inline, thumb
        self.written: dict[str, str] = {}  # ReportImage.key -> its src
        self.dir = out_dir / ASSETS
        if not inline:
            self.dir.mkdir(parents=True, exist_ok=True)

    def image(self, item: ReportImage, name: str) -> str:
        if item.key is not None and item.key in self.written:
            return self.written[item.key]
        if item.image is None:
            raise ValueError(f"report image {item.caption!r} has no pixels; the file report needs ReportImage.image")
        src = self.src(item.image, name)
        if item.key is not None:
            self.written[item.key] = src
        return src

    def video(self, shot: ShotReport) -> tuple[str, str] | None:
        if shot.video is None:
            return None
        poster = _poster_frame(shot.video)
        name = f"shot_{shot.index:04d}_poster"
        return _link(self.out_dir, shot.video), (self.src(poster, name, max_side=960) if poster is not None else "")

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


class ServedMedia:
    """The web app's media: every image and video by its server URL, in ``data-`` attributes the
    page resolves with its key (an ``<img src>`` cannot send an ``Authorization`` header)."""

    attr = "data-src"

    def image(self, item: ReportImage, name: str) -> str:
        return quote(item.url or "", safe="/?=&")

    def video(self, shot: ShotReport) -> tuple[str, str] | None:
        if shot.video_url is None:
            return None
        return quote(shot.video_url, safe="/?=&"), quote(shot.poster_url or "", safe="/?=&")


def _poster_frame(video: str | os.PathLike[str]) -> np.ndarray | None:
    """The first frame of an MP4, or None when it cannot be read (the video still links)."""
    from .video import read_frames

    try:
        frames = read_frames(video, max_frames=1)
    except Exception:  # noqa: BLE001 - a poster is decoration: a broken file keeps its link
        return None
    return frames[0] if len(frames) else None


def _link(out_dir: Path, target: str | os.PathLike) -> str:
    p = Path(target)
    try:
        rel = os.path.relpath(p.resolve(), out_dir.resolve())
    except ValueError:  # another drive on Windows
        rel = str(p.resolve())
    # quote with only '/' safe: ':' becomes %3A, so no path can turn into a URL scheme
    return quote(Path(rel).as_posix(), safe="/")


# --- sections ------------------------------------------------------------------------------------


def report_css() -> str:
    """The run view's stylesheet (``templates/report.css``), shared with the web app."""
    return CSS_FILE.read_text(encoding="utf-8")


def _shots_text(shots: Iterable[Any]) -> str:
    return ", ".join(str(shot_number(int(s))) for s in shots)


def _metrics_section(metrics: Any) -> str:
    if metrics is None:
        return ""
    data = metrics.to_json() if hasattr(metrics, "to_json") else dict(metrics)
    similarity = _similarity_label(data)
    overall = [
        (f"{similarity} across shots", data.get("image_similarity", data.get("clip_i"))),
        ("Face: reference → shot", data.get("face_ref")),
        ("Face: shot → shot", data.get("face_shot")),
        ("Character count match (OCCM)", data.get("occm")),
    ]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_fmt(v, 2 if 'OCCM' in k else 3))}</td></tr>" for k, v in overall)
    ent_rows = ""
    for name, ent in (data.get("entities") or {}).items():
        ent_rows += (
            f"<tr><td>{_e(name)}</td><td>{_e(_shots_text(ent.get('shots', [])))}</td>"
            f"<td>{_e(_fmt(ent.get('image_similarity', ent.get('clip_i'))))}</td>"
            f"<td>{_e(ent.get('image_similarity_pairs', ent.get('clip_i_pairs', 0)))}</td>"
            f"<td>{_e(_fmt(ent.get('face_ref')))}</td><td>{_e(_fmt(ent.get('face_shot')))}</td>"
            f"<td>{_e(_fmt(ent.get('faces_found')))}</td></tr>"
        )
    notes = "".join(f"<p class='muted'>{_e(n)}</p>" for n in data.get("notes") or [])
    if data.get("occm_definition"):
        notes += f"<p class='muted'>OCCM: {_e(data['occm_definition'])}</p>"
    if data.get("occm_unscored_shots"):
        notes += f"<p class='muted'>OCCM not scored (nothing to count): shots {_e(_shots_text(data['occm_unscored_shots']))}</p>"
    caveat = f"<p class='caveat' role='note'><strong>{_e(data['caveat'])}</strong></p>" if data.get("caveat") else ""
    per_entity = ""
    if ent_rows:
        per_entity = (
            "<h3>Per entity</h3><table><tr><th scope='col'>Entity</th><th scope='col'>Shots</th>"
            f"<th scope='col'>{_e(similarity)}</th><th scope='col'>Pairs</th><th scope='col'>Face ref</th>"
            f"<th scope='col'>Face shot</th><th scope='col'>Faces found</th></tr>{ent_rows}</table>"
        )
    return f"<section id='metrics'><h2>Consistency</h2>{caveat}<table>{rows}</table>{per_entity}{notes}</section>"


def _similarity_label(data: Mapping[str, Any]) -> str:
    """CLIP-I only when a CLIP model made the figure (metrics.json then carries ``clip_i``, as runs
    from before the rename did); else the embedder that made it ("colour histogram")."""
    if data.get("clip_i") is not None:
        return "CLIP-I"
    embedder = data.get("image_embedder") or ""
    return f"Image similarity ({embedder})" if embedder else "Image similarity"


def _sheets_section(entity_sheets: Mapping[str, Mapping[int, Sequence[ImageLike]]], assets: _Assets) -> str:
    if not entity_sheets:
        return ""
    cards = []
    for i, (name, per_shot) in enumerate(entity_sheets.items()):
        images, labels = [], []
        for shot, imgs in sorted(per_shot.items()):
            for img in imgs:
                images.append(_pil(img))
                labels.append(f"shot {shot_number(shot)}")
        if not images:
            continue
        sheet = contact_sheet(images, cols=min(6, len(images)), thumb=(128, 96), labels=labels)
        src = assets.src(sheet, f"entity_{i:03d}", max_side=max(sheet.size), fmt="PNG")
        cards.append(
            f"<div><h3>{_e(name)}</h3><img src='{src}' alt='{_e(name)} across shots'>"
            f"<div class='muted'>{len(images)} images in shots {_e(_shots_text(sorted(per_shot)))}</div></div>"
        )
    return f"<section id='entities'><h2>Entities across shots</h2><div class='sheets'>{''.join(cards)}</div></section>"


def _figures(items: Iterable[ReportImage], prefix: str, media: Media) -> str:
    figs = []
    for j, item in enumerate(items):
        src = media.image(item, f"{prefix}_{j}")
        figs.append(
            f"<figure><img {media.attr}='{src}' alt='{_e(item.caption)}'>"
            f"<figcaption>{_e(item.caption)}</figcaption></figure>"
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
    head = "<tr><th scope='col'>Blueprint</th><th scope='col'>Kind</th><th scope='col'>Score</th><th scope='col'>Why</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _blueprint_name(b: BlueprintUse | Mapping[str, Any]) -> str:
    return str(b.name if isinstance(b, BlueprintUse) else b.get("name"))


def _video(shot: ShotReport, media: Media) -> str:
    found = media.video(shot)
    if found is None:
        return ""
    href, poster = found
    name = Path(shot.video).name if shot.video is not None else f"shot_{shot.index:03d}.mp4"
    label = f"Shot {shot_number(shot.index)} video"
    # src/poster/href, or data-src/data-poster/data-href for a page that fetches them with its key
    poster_attr = f" {media.attr.replace('src', 'poster')}='{poster}'" if poster else ""
    return (
        f"<video controls preload='none' {media.attr}='{href}'{poster_attr} aria-label='{_e(label)}'></video>"
        f"<p><a {media.attr.replace('src', 'href')}='{href}'>{_e(name)}</a></p>"
    )


def _shot_section(shot: ShotReport, media: Media) -> str:
    where = f"scene {shot.scene}, shot {shot.shot_in_scene}" if shot.scene is not None else ""
    cut = "<span class='tag cut'>cut</span>" if shot.cut else "<span class='tag'>continues</span>"
    enriched = ""
    if shot.enriched_prompt and shot.enriched_prompt != shot.prompt:
        enriched = f"<h3>Enriched prompt</h3><div class='prompt'>{_e(shot.enriched_prompt)}</div>"
    facts = []
    if shot.seed is not None:
        facts.append(f"seed {_e(shot.seed)}")
    facts += [f"{_e(k)} {v:.2f}s" for k, v in shot.timings.items()]
    notes = "".join(f"<p class='muted'>{_e(n)}</p>" for n in shot.notes)
    prefix = f"shot_{shot.index:04d}"
    number = shot_number(shot.index)
    return (
        f"<section class='shot-card' id='shot-{number}' aria-labelledby='shot-{number}-title'>"
        f"<h2 id='shot-{number}-title'>Shot {number} "
        f"<span class='muted'>{_e(where)}</span> {cut}</h2><div class='shot'><div>{_video(shot, media)}"
        f"<h3>Prompt</h3><div class='prompt'>{_e(shot.prompt)}</div>{enriched}"
        f"<p class='muted'>{' · '.join(facts)}</p>{notes}</div><div>"
        f"<h3>Retrieved blueprints</h3>{_blueprints(shot.blueprints)}{_guard(shot)}"
        f"<h3>Memory keyframes used</h3>{_figures(shot.memory, prefix + '_mem', media)}"
        f"<h3>Keyframes extracted</h3>{_figures(shot.keyframes, prefix + '_kf', media)}"
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


# --- entry points --------------------------------------------------------------------------------


def render_run(
    story: Any,
    shots: Sequence[ShotReport],
    media: Media,
    *,
    metrics: Any = None,
    entity_sheets: Mapping[str, Mapping[int, Sequence[ImageLike]]] | None = None,
    sheet_assets: _Assets | None = None,
    generator: str | None = None,
) -> str:
    """The run view: header, totals, metrics, entity sheets (file report only) and every shot, as
    one ``<div class='run'>`` (the web app inserts it as it is; all user text is escaped here)."""
    title = getattr(story, "title", "") or getattr(story, "id", "") or "Story"
    story_id = getattr(story, "id", "")
    overview = getattr(story, "overview", "")
    scenes = {s.scene for s in shots if s.scene is not None}
    totals = [
        ("shots", len(shots)),
        ("scenes", len(scenes) if scenes else len(getattr(story, "scenes", []) or [])),
        (
            "entities",
            len(entity_sheets) if entity_sheets else len({_blueprint_name(b) for s in shots for b in s.blueprints}),
        ),
        ("keyframes", sum(len(s.keyframes) for s in shots)),
        ("blueprint uses", sum(len(s.blueprints) for s in shots)),
    ]
    seconds = sum(sum(s.timings.values()) for s in shots)
    if seconds:
        totals.append(("seconds", round(seconds, 1)))
    totals_html = "".join(f"<div class='total'><b>{_e(v)}</b>{_e(k)}</div>" for k, v in totals)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sheets = _sheets_section(entity_sheets or {}, sheet_assets) if sheet_assets is not None else ""
    return (
        f"<div class='run'><header><h1>{_e(title)}</h1><div class='meta'>story {_e(story_id)} · generator"
        f" {_e(generator or '–')} · {_e(created)}</div></header><main>"
        f"<section aria-label='totals'><div class='totals'>{totals_html}</div>"
        + (f"<p>{_e(overview)}</p>" if overview else "")
        + "</section>"
        + _metrics_section(metrics)
        + sheets
        + "".join(_shot_section(s, media) for s in shots)
        + "</main></div>"
    )


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
    """Write ``out_dir/report.html`` (images, poster frames included, in ``out_dir/report_files/``,
    or inlined as data URIs with ``inline_images``) and return its path.

    ``story`` is a :class:`continuity.story.StoryScript` (or anything with ``id``/``title``);
    ``metrics`` a :class:`continuity.metrics.ConsistencyReport` or its ``to_json()`` dict;
    ``entity_sheets`` maps entity name -> shot index -> images of it in that shot.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assets = _Assets(out, inline_images, thumb)
    title = getattr(story, "title", "") or getattr(story, "id", "") or "Story"
    body = render_run(
        story, shots, assets, metrics=metrics, entity_sheets=entity_sheets, sheet_assets=assets, generator=generator
    )
    html_text = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · continuity report</title><style>body{{margin:0}}{report_css()}</style></head>"
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


__all__ = [
    "Media",
    "ReportImage",
    "ServedMedia",
    "ShotReport",
    "render_run",
    "report_css",
    "shot_number",
    "write_report",
]
