"""The continuity guard on real faces (dlib's shipped ResNet): the right person passes, another
person fails, no face is its own outcome, and locations are checked by image similarity."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)

from continuity.guard import ContinuityGuard, GuardConfig
from memstore.errors import InvalidInputError
from retrieval import Retriever, ShotQuery


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """The astronaut and two people of insightface's t1.jpg, as face crops."""
    from skimage import data

    from memstore.embedders import get_embedder

    spec = importlib.util.find_spec("insightface")
    if spec is None:
        pytest.skip("insightface is not installed (its wheel ships the test photos)")
    t1 = Image.open(Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg").convert("RGB")
    boxes = sorted((f.face_box for f in get_embedder("dlib").detect_faces(t1)), key=lambda b: b[0])
    crops = [t1.crop(_grow(b, t1.size)).resize((160, 180)) for b in boxes[:2]]
    astro = Image.fromarray(data.astronaut()).crop((100, 20, 360, 300)).resize((160, 180))
    return {"Eileen": astro, "Ana": crops[0], "Ben": crops[1]}


def _grow(box, size, pad=0.6):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return (max(0, x0 - pad * w), max(0, y0 - pad * h), min(size[0], x1 + pad * w), min(size[1], y1 + pad * h))


@pytest.fixture
def cast(library, people):
    from continuity.drawn import harbor_at_dusk

    library.configure(embedders=["color-histogram", "dlib"])
    for name, face in people.items():
        library.register(name, "character", images=[face])
    library.register("Harbor", "location", images=[harbor_at_dusk((320, 180))])
    return library


def shot(*faces: Image.Image, background=None) -> np.ndarray:
    from continuity.drawn import harbor_at_dusk

    canvas = (background or harbor_at_dusk((400, 240))).copy()
    for i, face in enumerate(faces):
        canvas.paste(face.resize((150, 170)), (20 + i * 200, 40))
    frame = np.asarray(canvas.convert("RGB"))
    return np.stack([frame, frame])


def verdict(library, prompt, frames, **config):
    result = Retriever(library).retrieve(ShotQuery(prompt))
    return ContinuityGuard(library, GuardConfig(**config)).check(frames, result)


def test_the_right_face_passes_and_another_person_fails(cast, people):
    right = verdict(cast, "Eileen walks along the Harbor.", shot(ImageOps.mirror(people["Eileen"])))
    by_name = {c.name: c for c in right.checks}
    assert right.passed and by_name["Eileen"].method == "face" and by_name["Eileen"].outcome == "pass"
    assert by_name["Harbor"].outcome == "unchecked"  # no semantic image embedder in this library
    wrong = verdict(cast, "Eileen walks along the Harbor.", shot(people["Ana"]))
    (failed,) = wrong.failing()
    assert not wrong.passed and failed.name == "Eileen" and failed.outcome == "fail"
    assert failed.score < failed.threshold < by_name["Eileen"].score
    assert "Eileen (character) fail" in wrong.explain()


def test_no_face_is_its_own_outcome_and_counts_are_compared(cast, people):
    empty = verdict(cast, "Eileen walks along the Harbor.", shot())
    assert [c.outcome for c in empty.checks if c.name == "Eileen"] == ["no_face"] and not empty.passed
    two = verdict(cast, "Ana and Ben at the Harbor.", shot(people["Ana"], people["Ben"]))
    assert two.passed and two.faces == 2 and two.expected == 2 and two.occm == pytest.approx(100.0)
    # one face cannot prove two characters: Ben is missing even though Ana's face is there twice over
    one = verdict(cast, "Ana and Ben at the Harbor.", shot(people["Ana"]))
    assert {c.name: c.outcome for c in one.checks if c.kind == "character"} == {"Ana": "pass", "Ben": "no_face"}
    assert one.occm < 100


def test_thresholds_are_overridable_per_entity(cast, people):
    lenient = verdict(cast, "Eileen walks along the Harbor.", shot(people["Ana"]), thresholds={"Eileen": 0.5})
    assert lenient.passed
    cast.update("Eileen", attributes={"guard_threshold": 0.5})
    assert verdict(cast, "Eileen walks along the Harbor.", shot(people["Ana"])).passed


def test_a_colour_histogram_does_not_judge_places(cast, people):
    """It cannot: an animatic frame of the right place scores under a night sky (thresholds.py)."""
    night = Image.new("RGB", (400, 240), (5, 5, 40))
    result = verdict(cast, "Eileen walks along the Harbor.", shot(ImageOps.mirror(people["Eileen"]), background=night))
    harbor = next(c for c in result.checks if c.name == "Harbor")
    assert (harbor.method, harbor.outcome) == ("none", "unchecked") and result.passed


def test_bad_config_and_frames_are_one_line_errors(cast):
    with pytest.raises(InvalidInputError, match="guard policy 'sometimes' is unknown"):
        GuardConfig(policy="sometimes")
    with pytest.raises(InvalidInputError, match="max_attempts must be 1 to 20"):
        GuardConfig(max_attempts=0)
    with pytest.raises(InvalidInputError, match="frames must be T x H x W x 3"):
        verdict(cast, "Eileen", np.zeros((8, 8, 3), np.uint8))


class FacePainter:
    """A generator double: paints each shot's characters onto the harbor; ``wrong`` decides, per
    attempt number, whether the first character gets another person's face."""

    model_id = "face-painter"

    def __init__(self, people, wrong):
        self.people, self.wrong, self.calls = people, wrong, 0

    def prepare(self, shot, result):
        from generators import Conditioning

        return Conditioning("painter", shot.prompt, options={"names": [h.entity.name for h in result.hits]})

    def generate(self, shot, conditioning, seed=None):
        from generators import ShotOutput

        self.calls += 1
        names = [n for n in conditioning.options["names"] if n in self.people]
        if self.wrong(self.calls) and names:
            names[0] = next(p for p in self.people if p not in names)
        return ShotOutput(shot_frames(*(ImageOps.mirror(self.people[n]) for n in names)), shot.fps)


def shot_frames(*faces):
    return shot(*faces)


def run(cast, people, tmp_path, wrong, guard, prompts=("Eileen walks along the Harbor.",), **config):
    from continuity.runner import RunConfig, StoryRunner
    from continuity.story import parse_story

    story = {
        "id": f"guard-{guard}",
        "scenes": [
            {"index": 1, "shots": [{"index": i + 1, "prompt": p, "duration": 0.5} for i, p in enumerate(prompts)]}
        ],
    }
    painter = FacePainter(people, wrong)
    cfg = RunConfig(width=400, height=240, fps=2, guard=guard, **config)
    return StoryRunner(cast, tmp_path / guard, cfg, generator=painter).run(parse_story(story)), painter


def test_a_wrong_first_attempt_is_retried_and_the_second_kept(cast, people, tmp_path):
    from continuity.provenance import read_provenance

    result, painter = run(cast, people, tmp_path, wrong=lambda n: n == 1, guard="retry")
    (made,) = result.shots
    assert painter.calls == 2 and made.attempts == 2 and made.verdict.passed
    manifest = read_provenance(made.provenance)
    assert [a["verdict"]["passed"] for a in manifest.attempts] == [False, True]
    assert manifest.seed == manifest.attempts[1]["seed"] != manifest.attempts[0]["seed"]
    assert manifest.guard["passed"] is True
    html = (tmp_path / "retry" / "report.html").read_text()
    assert "Continuity guard" in html and "attempt 1" in html and "attempt 2" in html
    assert result.metrics["guard"]["attempts_per_shot"] == 2.0


def test_never_right_fails_under_strict_and_is_recorded_under_warn(cast, people, tmp_path):
    from continuity.guard import GuardError

    with pytest.raises(GuardError, match=r"shot 0 failed the continuity guard after 3 attempt\(s\): Eileen"):
        run(cast, people, tmp_path, wrong=lambda n: True, guard="strict")
    assert cast.shots.hashes("guard-strict") == {}  # nothing committed: the run can resume
    warned, painter = run(cast, people, tmp_path, wrong=lambda n: True, guard="warn")
    (made,) = warned.shots
    assert painter.calls == 1 and not made.verdict.passed
    assert made.keyframes and {k.source for k in made.keyframes} == {"rejected"}  # kept to be seen
    assert cast.keyframes("guard-warn") == []  # and never remembered: drift cannot spread
    assert warned.metrics["guard"]["failed_shots"] == [0]


def test_rejected_keyframes_never_reach_memory(cast, people, tmp_path):
    prompts = ("Eileen walks along the Harbor.", "Eileen walks along the Harbor again.")
    result, _ = run(cast, people, tmp_path, wrong=lambda n: n <= 3, guard="retry", prompts=prompts)
    first, second = result.shots
    assert not first.verdict.passed and {k.source for k in first.keyframes} == {"rejected"}
    assert second.verdict.passed and second.memory == []  # nothing of the failed shot is remembered
