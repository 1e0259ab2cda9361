"""What real shots need beyond a prompt (issue 19, item 5): a negative prompt, a per-shot era
(costume), regions for characters, a frame count and per-shot generator options. Each reaches the
generator, each is checked (range, unknown keys, unknown names), and adding the fields did not
change the input hash of a shot that does not use them (a resumed run still skips its shots)."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from continuity.preflight import name_problems
from continuity.server import create_app
from continuity.session import SessionConfig, StorySession
from continuity.story import parse_story, shot_input_hash
from generators.mock import MockGenerator
from memstore.errors import EntityNotFoundError, InvalidInputError, ScriptError

SMALL = SessionConfig(width=64, height=48, fps=4)

SCRIPT = {
    "id": "armor",
    "scenes": [
        {
            "location": "Harbor",
            "shots": [
                {
                    "prompt": "Aria draws her sword",
                    "cast": ["Aria", "Bram"],
                    "negative_prompt": "blurry, extra fingers",
                    "era": {"Aria": "armored"},
                    "regions": {"Aria": [0.0, 0.1, 0.5, 1.0], "Bram": [0.5, 0.1, 1.0, 1.0]},
                    "frames": 9,
                    "options": {"steps": 12, "guidance": 4.5, "scales": {"Aria": 0.8}},
                }
            ],
        }
    ],
}


def _shot(**fields):
    script = json.loads(json.dumps(SCRIPT))
    script["scenes"][0]["shots"][0].update(fields)
    return script


def test_the_fields_parse_and_reach_the_generator(cast):
    shot = parse_story(SCRIPT).scenes[0].shots[0]
    session = StorySession(cast, "armor", SMALL, adapter=MockGenerator())
    plan = session.plan_shot(shot, index=0, scene_index=1, location="Harbor")
    spec = plan.spec
    assert spec.negative_prompt == "blurry, extra fingers" and spec.num_frames == 9
    assert spec.regions == {"Aria": (0.0, 0.1, 0.5, 1.0), "Bram": (0.5, 0.1, 1.0, 1.0)}
    assert spec.steps == 12 and spec.guidance == 4.5 and spec.scales == {"Aria": 0.8}
    assert plan.call_arguments["num_inference_steps"] == 12 and plan.call_arguments["guidance_scale"] == 4.5
    assert plan.call_arguments["negative_prompt"] == "blurry, extra fingers"


def test_a_per_shot_era_picks_that_costume(cast, photos):
    aria = cast.find("Aria")
    cast.add_images(aria.id, [photos["rocket"]], era="armored")
    session = StorySession(cast, "armor", SMALL)
    plain = session.plan("Aria walks", cast=["Aria"])
    armored = session.plan("Aria walks", cast=["Aria"], era={"Aria": "armored"})
    eras = lambda plan: {r.era for h in plan.result.hits for r in h.references}  # noqa: E731
    assert "default" in eras(plain) and eras(armored) == {"armored"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frames": 0}, "'frames'"),
        ({"regions": {"Aria": [0.6, 0.0, 0.5, 1.0]}}, "region of 'Aria'"),
        ({"options": {"stpes": 3}}, "'options.stpes' is not a known field"),
        ({"options": {"scales": {"Aria": 9}}}, "scale of 'Aria' must be within 0..5"),
        ({"negativ_prompt": "x"}, "did you mean 'negative_prompt'"),
    ],
)
def test_bad_fields_are_named_with_their_shot(fields, message):
    with pytest.raises(ScriptError) as err:
        parse_story(_shot(**fields))
    assert message in str(err.value) and "scene 1, shot 1" in str(err.value)


def test_a_typo_in_a_keyed_name_fails_before_any_render(cast):
    story = parse_story(_shot(regions={"Arai": [0, 0, 0.5, 1]}, options={"scales": {"Brma": 0.5}}))
    problems = name_problems(story, cast)
    assert any("region for 'Arai'" in p and "did you mean 'Aria'" in p for p in problems), problems
    assert any("scale for 'Brma'" in p and "did you mean 'Bram'" in p for p in problems), problems
    session = StorySession(cast, "armor", SMALL)
    with pytest.raises(EntityNotFoundError, match="did you mean 'Aria'"):
        session.plan("Aria walks", era={"Ariaa": "armored"})
    with pytest.raises(EntityNotFoundError, match="cast 'Brma'"):
        session.plan("Bram works", cast=["Brma"])
    with pytest.raises(InvalidInputError, match="'frames'"):
        session.plan("Bram works", frames=-1)


def test_the_hash_of_a_shot_without_the_new_fields_is_unchanged():
    shot = (
        parse_story({"id": "s", "scenes": [{"shots": [{"prompt": "Aria walks", "cast": ["Aria"]}]}]}).scenes[0].shots[0]
    )
    before = {  # a shot's fields as the store's earlier shot hashes were computed over them
        "index": 1,
        "prompt": "Aria walks",
        "cut": True,
        "cast": ["Aria"],
        "location": None,
        "duration": 2.0,
        "seed": None,
        "first_frame_prompt": None,
    }
    text = json.dumps({"shot": before, "extra": {}}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert shot_input_hash(shot) == hashlib.sha256(text.encode()).hexdigest()
    changed = shot.model_copy(update={"frames": 5})
    assert shot_input_hash(changed) != shot_input_hash(shot)


def test_the_fields_over_http(cast, tmp_path):
    client = TestClient(create_app(str(tmp_path / "db")), base_url="http://127.0.0.1")
    body = {"prompt": "Aria at the Harbor", "frames": 5, "negative_prompt": "fog", "options": {"steps": 3}}
    response = client.post("/libraries/default/stories/web/plan", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["num_frames"] == 5
    bad = client.post("/libraries/default/stories/web/plan", json={"prompt": "Aria", "regions": {"Ari": [0, 0, 1, 1]}})
    assert bad.status_code == 404 and "did you mean 'Aria'" in bad.json()["message"]
    wrong = client.post("/libraries/default/stories/web/plan", json={"prompt": "Aria", "options": {"steps": 0}})
    assert wrong.status_code == 422
