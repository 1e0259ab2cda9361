"""The HTML report: self-contained, escaped, with sheets, metrics and per-shot sections."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from continuity.metrics import consistency
from continuity.provenance import BlueprintUse
from continuity.report import ReportImage, ShotReport, write_report
from continuity.story import parse_story

EVIL = "<script>alert('x')</script>"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collect:
    c = _Collect()
    c.feed(path.read_text(encoding="utf-8"))
    return c


def _fixture(tmp_path, photos):
    story = parse_story(
        {
            "id": "evil",
            "title": f"Title {EVIL}",
            "overview": "o & <b>bold</b>",
            "scenes": [{"shots": [{"prompt": f"A cat {EVIL} sits"}, {"prompt": "It stretches", "cut": False}]}],
        },
    )
    video_dir = tmp_path / "run" / "shots"
    video_dir.mkdir(parents=True)
    from continuity.video import write_mp4

    clip = np.stack([np.asarray(Image.fromarray(photos["chelsea"]).resize((64, 48)))] * 3)
    v0 = write_mp4(video_dir / "shot_000.mp4", clip, fps=8)
    odd = write_mp4(video_dir / "javascript:alert(1).mp4", clip, fps=8)
    bp = BlueprintUse(
        entity_id="e1", name=f"Cat {EVIL}", kind="character", score=0.9, reasons=[f"named {EVIL}", "dense 0.4"]
    )
    shots = [
        ShotReport(
            index=0,
            scene=1,
            shot_in_scene=1,
            prompt=story.scenes[0].shots[0].prompt,
            video=v0,
            enriched_prompt="A cat (tabby, green eyes) sits",
            blueprints=[bp],
            keyframes=[ReportImage(photos["chelsea"], f"frame 0: first frame {EVIL}")],
            seed=3,
            timings={"generate": 1.25},
        ),
        ShotReport(
            index=1,
            scene=1,
            shot_in_scene=2,
            cut=False,
            prompt="It stretches",
            video=odd,
            blueprints=[{"name": "Kitchen", "kind": "location", "score": 0.5, "reasons": ["scene location"]}],
            memory=[ReportImage(Image.fromarray(photos["chelsea"]), "sink: shot 0 frame 0")],
            keyframes=[ReportImage(photos["coffee"], "frame 0"), ReportImage(photos["rocket"], "frame 12")],
        ),
    ]
    sheets = {f"Cat {EVIL}": {0: [photos["chelsea"]], 1: [photos["chelsea"], photos["coffee"]]}}
    metrics = consistency({f"Cat {EVIL}": sheets[f"Cat {EVIL}"]}, character_counts={0: (1, 1), 1: (2, 1)})
    return story, shots, sheets, metrics


def test_report_is_escaped_and_self_contained(tmp_path, photos):
    story, shots, sheets, metrics = _fixture(tmp_path, photos)
    out = tmp_path / "run"
    path = write_report(out, story, shots, metrics=metrics, entity_sheets=sheets, generator="animatic")
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html.lower()  # the report has no scripts of its own, and users' stay text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "o &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    parsed = _parse(path)
    text = "".join(parsed.text)
    assert f"A cat {EVIL} sits" in text and f"Title {EVIL}" in text and f"named {EVIL}" in text
    # nothing is fetched from elsewhere: every src/href is a local file that exists
    links = [a.get("src") or a.get("href") for t, a in parsed.tags if t in ("img", "video", "a", "link", "script")]
    links = [x for x in links if x]
    assert links and not any(x.startswith(("http:", "https:", "//")) for x in links)
    for link in links:
        assert ":" not in link, link  # quoted: no URL scheme can sneak in
        assert (out / unquote(link)).is_file(), link
    imgs = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(imgs) == 1 + 1 + 1 + 2  # one entity sheet, one memory frame, three keyframes
    assert all(Path(unquote(s)).parent.name == "report_files" for s in imgs)
    videos = [a["src"] for t, a in parsed.tags if t == "video"]
    assert videos == ["shots/shot_000.mp4", "shots/javascript%3Aalert%281%29.mp4"]


def test_report_sections(tmp_path, photos):
    story, shots, sheets, metrics = _fixture(tmp_path, photos)
    path = write_report(tmp_path / "run", story, shots, metrics=metrics, entity_sheets=sheets, generator="animatic")
    text = "".join(_parse(path).text)
    assert "Consistency" in text and "Character count match (OCCM)" in text
    # no CLIP made the similarity here (the weightless thumbnail embedder did): it is not called CLIP-I
    assert "Image similarity (thumbnail+palette" in text and "CLIP-I" not in text
    assert f"{metrics.occm:.2f}" in text
    assert "Entities across shots" in text and "3 images in shots 1, 2" in text
    assert "Shot 1" in text and "Shot 2" in text and "scene 1, shot 2" in text and "continues" in text
    assert "Enriched prompt" in text and "tabby, green eyes" in text and "seed 3" in text
    assert "sink: shot 0 frame 0" in text and "frame 12" in text and "scene location" in text
    assert "0.900" in text  # blueprint score
    sheet = Image.open(tmp_path / "run" / "report_files" / "entity_000.png")
    assert sheet.width > 3 * 128  # three thumbnails side by side


def test_inline_images(tmp_path, photos):
    story, shots, sheets, metrics = _fixture(tmp_path, photos)
    out = tmp_path / "inline"
    path = write_report(out, story, shots, metrics=metrics.to_json(), entity_sheets=sheets, inline_images=True)
    imgs = [a["src"] for t, a in _parse(path).tags if t == "img"]
    assert imgs and all(s.startswith("data:image/") for s in imgs)
    assert not (out / "report_files").exists()
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_minimal_report(tmp_path):
    story = parse_story({"id": "s", "scenes": [{"shots": ["only a prompt"]}]})
    path = write_report(tmp_path, story, [ShotReport(index=0, prompt="only a prompt")])
    text = "".join(_parse(path).text)
    assert "only a prompt" in text and "none" in text


def test_shot_report_from_manifest(tmp_path, photos):
    from continuity.provenance import ShotManifest, output_file

    run = tmp_path / "run"
    (run / "shots").mkdir(parents=True)
    (run / "shots" / "s.mp4").write_bytes(b"v")
    m = ShotManifest(
        story_id="s",
        shot_index=4,
        scene_index=2,
        shot_in_scene=1,
        input_hash="0" * 64,
        prompt=f"p {EVIL}",
        generator="mock",
        seed=5,
        timings={"generate": 0.5},
        blueprints=[BlueprintUse(entity_id="e", name="Cat", kind="character", score=0.7, reasons=["named"])],
        outputs=[output_file(run / "shots" / "s.mp4", base_dir=run)],
    )
    shot = ShotReport.from_manifest(
        m, manifest_dir=run, keyframes=[ReportImage(photos["chelsea"], "frame 0")], cut=False
    )
    assert (shot.index, shot.scene, shot.shot_in_scene, shot.seed, shot.cut) == (4, 2, 1, 5, False)
    assert Path(shot.video) == run / "shots" / "s.mp4"
    story = parse_story({"id": "s", "scenes": [{"shots": ["x"]}]})
    html = write_report(run, story, [shot]).read_text()
    assert "href='shots/s.mp4'" in html and "&lt;script&gt;" in html and "Shot 5" in html


def test_a_remembered_keyframe_is_written_once_and_shown_from_that_file(tmp_path, photos):
    story = parse_story({"id": "mem", "scenes": [{"shots": [{"prompt": "A cat sits"}, {"prompt": "It naps"}]}]})
    first = ReportImage(photos["chelsea"], "frame 0", key="ref-1")
    later = [ReportImage(None, "shot 1 frame 0", key="ref-1"), ReportImage(None, "shot 1 frame 0", key="ref-1")]
    shots = [
        ShotReport(index=0, prompt="A cat sits", keyframes=[first]),
        ShotReport(index=1, prompt="It naps", memory=later, keyframes=[ReportImage(photos["coffee"], "frame 0")]),
    ]
    page = write_report(tmp_path / "run", story, shots)
    sources = [a["src"] for tag, a in _parse(page).tags if tag == "img" and "frame 0" in a.get("alt", "")]
    assert len(sources) == 4 and sources[0] == sources[1] == sources[2] != sources[3]
    assert len(list((tmp_path / "run" / "report_files").iterdir())) == 2  # chelsea once, coffee once
    with pytest.raises(ValueError, match="no pixels"):  # a key never written cannot be shown
        write_report(tmp_path / "bad", story, [ShotReport(index=0, prompt="x", memory=[later[0]])])
