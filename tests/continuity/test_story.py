"""Story scripts: native YAML/JSON, ST-Bench and ViStoryBench, validation and input hashes."""

from __future__ import annotations

import json

import pytest

from continuity.story import (
    MAX_PROMPT_CHARS,
    MAX_SHOTS,
    detect_format,
    load_story,
    parse_story,
    shot_input_hash,
)
from memstore.errors import ScriptError

NATIVE_YAML = """
id: knight
title: The Knight
overview: A knight keeps his scar.
cast:
  - name: Sir Aldric
    kind: character
    aliases: [Aldric, the knight]
    description: scarred knight with a silver gorget
    images: [refs/aldric.png]
  - name: Castle Gate
    kind: location
scenes:
  - location: Castle Gate
    shots:
      - prompt: Sir Aldric rides to the castle gate.
        cast: [Sir Aldric]
        duration: 3.5
        seed: 7
      - prompt: He dismounts.
        cut: false
  - shots:
      - "A wide view of the courtyard."
"""


def test_native_yaml(tmp_path):
    path = tmp_path / "knight.yaml"
    path.write_text(NATIVE_YAML)
    story = load_story(path)
    assert story.id == "knight" and story.source_format == "native"
    assert [c.name for c in story.cast] == ["Sir Aldric", "Castle Gate"]
    assert story.cast_member("the knight").name == "Sir Aldric"
    assert story.cast[0].image_paths(tmp_path) == [tmp_path / "refs/aldric.png"]
    shots = list(story.iter_shots())
    assert [(g, sc.index, sh.index, sh.cut) for g, sc, sh in shots] == [
        (0, 1, 1, True),
        (1, 1, 2, False),
        (2, 2, 1, True),
    ]
    assert shots[0][2].duration == 3.5 and shots[0][2].seed == 7 and shots[0][2].cast == ["Sir Aldric"]
    assert shots[1][2].duration == 2.0
    assert shots[0][1].location == "Castle Gate"


def test_native_json_same_as_yaml(tmp_path):
    import yaml

    data = yaml.safe_load(NATIVE_YAML)
    (tmp_path / "k.json").write_text(json.dumps(data))
    (tmp_path / "k.yaml").write_text(NATIVE_YAML)
    a, b = load_story(tmp_path / "k.json"), load_story(tmp_path / "k.yaml")
    assert a.model_dump(exclude={"base_dir"}) == b.model_dump(exclude={"base_dir"})


def _st_bench_files(shared_dir):
    files = sorted((shared_dir / "data" / "st-bench").glob("*.json"))
    assert len(files) == 30, "ST-Bench has 30 stories"
    return files


def test_st_bench_all_stories(shared_dir):
    total = 0
    for f in _st_bench_files(shared_dir):
        raw = json.loads(f.read_text())
        assert detect_format(raw) == "st-bench"
        story = load_story(f)
        expected = sum(len(s["video_prompts"]) for s in raw["scenes"])
        assert story.num_shots == expected, f.name
        assert story.id == f.stem and story.title == raw["story_name"]
        assert [s.index for s in story.scenes] == [s["scene_num"] for s in raw["scenes"]]
        g_expected = 0
        for g, scene, shot in story.iter_shots():
            raw_scene = raw["scenes"][[s["scene_num"] for s in raw["scenes"]].index(scene.index)]
            i = shot.index - 1
            assert g == g_expected
            g_expected += 1
            assert shot.prompt == raw_scene["video_prompts"][i].strip()
            assert shot.cut == raw_scene["cut"][i]
            if i < len(raw_scene.get("first_frame_prompt") or []):
                assert shot.first_frame_prompt == raw_scene["first_frame_prompt"][i].strip()
        # StoryMem's convention, which the cut semantics rest on: each scene opens with a cut
        assert all(scene.shots[0].cut for scene in story.scenes)
        total += expected
    assert total == 300  # ST-Bench: 30 stories, 300 shots (SOURCES.md)


def test_st_bench_missing_first_frame_and_cut(tmp_path):
    data = {
        "story_name": "T",
        "story_overview": "o",
        "scenes": [{"scene_num": 1, "video_prompts": ["a", "b", "c"], "first_frame_prompt": ["fa"]}],
    }
    story = parse_story(data, default_id="t")
    shots = story.scenes[0].shots
    assert [s.cut for s in shots] == [True, False, False]
    assert [s.first_frame_prompt for s in shots] == ["fa", None, None]


def test_st_bench_errors_name_scene_and_shot():
    data = {
        "story_name": "T",
        "scenes": [{"scene_num": 1, "video_prompts": ["a"]}, {"scene_num": 2, "video_prompts": ["a", "b", "  "]}],
    }
    with pytest.raises(ScriptError, match=r"^scene 2, shot 3: 'prompt' is empty$"):
        parse_story(data)
    data["scenes"][1]["video_prompts"][2] = 42
    with pytest.raises(ScriptError, match=r"^scene 2, shot 3: .*string"):
        parse_story(data)


VISTORY = {
    "Story_type": {"en": "Children's Picture Books", "ch": "童书"},
    "Characters": {
        "Mia": {"name_en": "Mia", "name_ch": "米娅", "prompt_en": "a girl with a red scarf", "tag": "realistic_human"},
        "Bo": {"name_en": "Bo the Fox", "prompt_en": "a small orange fox", "tag": "non_human"},
    },
    "Shots": [
        {
            "index": 1,
            "Setting Description": {"en": "A snowy forest at dawn."},
            "Plot Correspondence": {"en": "Mia meets Bo."},
            "Characters Appearing": {"en": ["Mia", "Bo"], "ch": ["米娅", "波"]},
            "Static Shot Description": {"en": "Mia kneels beside the fox."},
            "Shot Perspective Design": {"en": "Medium shot."},
        },
        {
            "index": 2,
            "Setting Description": "The forest edge.",
            "Plot Correspondence": "They walk home.",
            "Onstage Characters": "Mia",
            "Static Shot Description": "Mia walks, Bo follows.",
            "Shot Perspective Design": "Wide shot.",
        },
    ],
}


def test_vistorybench(tmp_path):
    folder = tmp_path / "07"
    (folder / "image" / "Mia").mkdir(parents=True)
    (folder / "image" / "Mia" / "00.png").write_bytes(b"x")
    (folder / "story.json").write_text(json.dumps(VISTORY, ensure_ascii=False))
    story = load_story(folder / "story.json")
    assert story.source_format == "vistorybench" and story.id == "07"
    assert story.overview == "Children's Picture Books"
    assert [c.name for c in story.cast] == ["Mia", "Bo the Fox"]
    assert story.cast_member("Bo").name == "Bo the Fox"  # the key is kept as an alias
    assert story.cast[0].images == ["image/Mia/00.png"] and story.cast[1].images == []
    shots = [sh for _, _, sh in story.iter_shots()]
    assert [s.index for s in shots] == [1, 2] and all(s.cut for s in shots)
    assert shots[0].cast == ["Mia", "Bo the Fox"] and shots[1].cast == ["Mia"]
    assert "Mia kneels beside the fox" in shots[0].prompt and "snowy forest" in shots[0].prompt
    assert "Medium shot" in shots[0].prompt


def test_vistorybench_shot_without_text():
    data = json.loads(json.dumps(VISTORY))
    data["Shots"][1] = {"index": 2, "Characters Appearing": ["Mia"]}
    with pytest.raises(ScriptError, match=r"^scene 1, shot 2: "):
        parse_story(data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["scenes"][1]["shots"].__setitem__(0, {"cut": True}), r"^scene 2, shot 1: 'prompt' is missing$"),
        (lambda d: d["scenes"][0]["shots"][1].__setitem__("prompt", ""), r"^scene 1, shot 2: 'prompt' is empty$"),
        (lambda d: d["scenes"][0]["shots"][1].__setitem__("duration", "long"), r"^scene 1, shot 2: 'duration'"),
        (lambda d: d["scenes"][0]["shots"][1].__setitem__("promt", "x"), r"^scene 1, shot 2: 'promt' is not a known"),
        (lambda d: d["scenes"][0]["shots"][0].__setitem__("cut", False), r"^scene 1, shot 1: the first shot"),
        (
            lambda d: d["scenes"][0]["shots"][1].__setitem__("prompt", "x" * (MAX_PROMPT_CHARS + 1)),
            r"^scene 1, shot 2: 'prompt' is too long",
        ),
        (lambda d: d["scenes"][0]["shots"][1].__setitem__("cast", ["a/b"]), r"^scene 1, shot 2: .*path separator"),
        (lambda d: d["scenes"][1].__setitem__("shots", []), r"^scene 2: 'shots' is missing or empty"),
        (lambda d: d.pop("scenes"), r"'scenes' is missing"),
        (lambda d: d["cast"][0].__setitem__("kind", "vehicle"), r"^cast member 1: 'kind'"),
    ],
)
def test_native_errors(mutate, message):
    import yaml

    data = yaml.safe_load(NATIVE_YAML)
    mutate(data)
    with pytest.raises(ScriptError, match=message) as info:
        parse_story(data)
    assert "\n" not in str(info.value)


def test_limits(tmp_path):
    big = {"id": "x", "scenes": [{"shots": ["p"] * (MAX_SHOTS + 1)}]}
    with pytest.raises(ScriptError, match="at most 10000"):
        parse_story(big)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (10 * 1024 * 1024 + 1))
    with pytest.raises(ScriptError, match="bytes, at most"):
        load_story(huge)
    with pytest.raises(ScriptError, match="does not exist"):
        load_story(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes: [unclosed\n")
    with pytest.raises(ScriptError, match="neither JSON nor YAML"):
        load_story(bad)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ScriptError, match="not UTF-8"):
        load_story(binary)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ScriptError, match="mapping at the top level"):
        load_story(listy)


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("id: !!python/object/apply:os.system ['echo hi']\nscenes: []\n")
    with pytest.raises(ScriptError):
        load_story(p)


def test_shot_input_hash():
    import yaml

    story = parse_story(yaml.safe_load(NATIVE_YAML))
    a = story.scenes[0].shots[0]
    h = shot_input_hash(a, {"generator": "animatic", "refs": ["r1", "r2"]})
    assert len(h) == 64
    assert h == shot_input_hash(a.model_copy(), {"refs": ["r1", "r2"], "generator": "animatic"})  # key order
    assert h != shot_input_hash(a, {"generator": "animatic", "refs": ["r2", "r1"]})
    assert h != shot_input_hash(a.model_copy(update={"seed": 8}), {"generator": "animatic", "refs": ["r1", "r2"]})
    assert h != shot_input_hash(
        a.model_copy(update={"prompt": a.prompt + "!"}), {"generator": "animatic", "refs": ["r1", "r2"]}
    )
