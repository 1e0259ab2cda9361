"""One rendering for report.html and the web app's run view: shots numbered from 1 everywhere,
a poster frame for every video, media by URL in the web app's view."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from PIL import Image

from continuity.report import ReportImage, ServedMedia, ShotReport, render_run, shot_number, write_report
from continuity.story import parse_story


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parsed = _Tags()
    parsed.feed(html)
    return parsed


def _shots(tmp_path: Path, photos) -> list[ShotReport]:
    from continuity.video import write_mp4

    (tmp_path / "shots").mkdir(parents=True, exist_ok=True)
    clip = np.stack([np.asarray(Image.fromarray(photos["astronaut"]).resize((64, 64)))] * 3)
    return [
        ShotReport(
            index=i,
            prompt=f"shot prompt {i}",
            video=write_mp4(tmp_path / "shots" / f"shot_{i:03d}.mp4", clip, fps=8),
            keyframes=[ReportImage(photos["astronaut"], "frame 0", url=f"/libraries/l/references/k{i}/image")],
            video_url=f"/libraries/l/runs/s/shots/{i}/video",
            poster_url=f"/libraries/l/runs/s/shots/{i}/poster",
        )
        for i in range(2)
    ]


def test_every_video_of_the_report_has_a_poster_frame(tmp_path, photos):
    story = parse_story({"id": "s", "scenes": [{"shots": ["a", "b"]}]})
    path = write_report(tmp_path, story, _shots(tmp_path, photos))
    videos = [a for t, a in _parse(path.read_text()).tags if t == "video"]
    assert len(videos) == 2
    for video in videos:
        poster = tmp_path / unquote(video["poster"] or "")
        assert poster.is_file() and poster.parent.name == "report_files"
        with Image.open(poster) as im:
            assert im.size == (64, 64)  # the shot's own first frame


def test_shots_are_numbered_from_one_in_headings_tables_and_sheets(tmp_path, photos):
    story = parse_story({"id": "s", "scenes": [{"shots": ["a", "b"]}]})
    metrics = {"entities": {"Cat": {"shots": [0, 1], "clip_i": 0.5}}}
    sheets = {"Cat": {0: [photos["chelsea"]], 1: [photos["chelsea"]]}}
    html = write_report(tmp_path, story, _shots(tmp_path, photos), metrics=metrics, entity_sheets=sheets).read_text()
    text = "".join(_parse(html).text)
    assert "Shot 1" in text and "Shot 2" in text and "Shot 0" not in text
    assert "<td>1, 2</td>" in html  # the per-entity table counts as the headings do
    assert "images in shots 1, 2" in text
    assert "id='shot-1'" in html and "aria-label='Shot 1 video'" in html
    assert shot_number(0) == 1


def test_the_web_view_is_the_same_rendering_with_media_by_url(tmp_path, photos):
    story = parse_story({"id": "s", "scenes": [{"shots": ["a", "b"]}]})
    shots = _shots(tmp_path, photos)
    web = render_run(story, shots, ServedMedia(), generator="animatic")
    parsed = _parse(web)
    # nothing loads by itself: the page fetches each address with its key
    assert not any(a.get("src") or a.get("poster") for _, a in parsed.tags)
    videos = [a for t, a in parsed.tags if t == "video"]
    assert [v["data-src"] for v in videos] == ["/libraries/l/runs/s/shots/0/video", "/libraries/l/runs/s/shots/1/video"]
    assert [v["data-poster"] for v in videos] == [
        "/libraries/l/runs/s/shots/0/poster",
        "/libraries/l/runs/s/shots/1/poster",
    ]
    images = [a["data-src"] for t, a in parsed.tags if t == "img"]
    assert images == ["/libraries/l/references/k0/image", "/libraries/l/references/k1/image"]
    # the same sections, headings and numbering as the file report
    file_text = "".join(_parse(write_report(tmp_path, story, shots).read_text()).text)
    web_text = "".join(parsed.text)
    for heading in ("Shot 1", "Shot 2", "Retrieved blueprints", "Memory keyframes used", "Keyframes extracted"):
        assert heading in web_text and heading in file_text


def test_metrics_are_named_for_what_made_them_and_the_animatic_caveat_shows():
    from continuity.report import _metrics_section

    histogram = {
        "image_similarity": 0.91,
        "image_embedder": "color-histogram",
        "caveat": "the animatic pastes the references: these figures measure the compositor",
        "occm_definition": "characters only",
        "occm_unscored_shots": [0],
    }
    html = _metrics_section(histogram)
    assert "Image similarity (color-histogram)" in html and "CLIP-I" not in html
    assert "measure the compositor" in html and "OCCM not scored (nothing to count): shots 1" in html
    clip = _metrics_section({"image_similarity": 0.8, "clip_i": 0.8, "image_embedder": "open_clip:ViT-B-32"})
    assert "CLIP-I across shots" in clip and "caveat" not in clip
