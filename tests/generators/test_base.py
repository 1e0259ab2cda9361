"""The adapter contract, the registry, the mock, and the light-import promise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from generators import (
    Conditioning,
    GeneratorAdapter,
    MockGenerator,
    ShotOutput,
    ShotSpec,
    get_generator,
    list_generators,
    register_generator,
)
from generators.base import auto_regions, face_crop, fit_frames, region_masks, regions_for, to_uint8_frames
from generators.testing import sample_result
from memstore.errors import InvalidInputError, MissingExtraError


def test_importing_generators_imports_no_torch_or_diffusers():
    code = (
        "import sys, generators; from generators import list_generators, ShotSpec, MockGenerator; "
        "import generators.animatic, generators.registry; list_generators(); "
        "from generators import AnimaticGenerator, get_generator; get_generator('animatic'); "
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_registry_lists_builtins_and_rejects_unknown_names():
    names = list_generators()
    for name in ("animatic", "prompt", "ip-adapter", "faceid", "wan-vace", "wan-m2v", "mock"):
        assert name in names
    with pytest.raises(InvalidInputError, match="unknown generator 'nope'; expected one of"):
        get_generator("nope")
    assert type(get_generator("animatic")).__name__ == "AnimaticGenerator"
    assert isinstance(get_generator("Mock"), MockGenerator)  # names are case- and _/- insensitive


def test_register_generator_adds_a_named_factory():
    @register_generator("test-solid")
    class Solid(MockGenerator):
        name = "test-solid"

        def __init__(self, value: int = 7):
            super().__init__(
                lambda shot, cond, seed: np.full((shot.num_frames, shot.height, shot.width, 3), value, np.uint8)
            )

    gen = get_generator("test_solid", value=9)
    out = gen.run(ShotSpec("x", num_frames=2, width=8, height=8), sample_result())
    assert isinstance(gen, GeneratorAdapter) and out.frames.shape == (2, 8, 8, 3) and (out.frames == 9).all()


def test_shot_spec_and_output_validate_with_got_vs_expected_messages():
    with pytest.raises(InvalidInputError, match="num_frames must be >= 1, got 0"):
        ShotSpec("x", num_frames=0)
    with pytest.raises(InvalidInputError, match="normalized"):
        ShotSpec("x", regions={"Aria": (0.5, 0, 0.2, 1)})
    with pytest.raises(InvalidInputError, match="uint8 T x H x W x 3, got float64"):
        ShotOutput(np.zeros((1, 4, 4, 3)), 12)


def test_mock_generator_is_deterministic_and_records_calls():
    gen = MockGenerator()
    shot = ShotSpec("Aria walks", num_frames=3, width=16, height=8)
    result = sample_result(memory=2)
    cond = gen.prepare(shot, result)
    assert [e.name for e in cond.entities] == ["Aria", "Bram", "Harbor"]
    assert cond.memory_ids == [r.id for r in result.memory]
    a, b = gen.generate(shot, cond, 5), gen.generate(shot, cond, 5)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, gen.generate(shot, cond, 6).frames)
    assert len(gen.calls) == 3 and gen.calls[0][2] == 5
    assert a.metadata["generator"] == "mock" and a.metadata["model"] == "mock"
    assert a.metadata["conditioning"]["memory"] == cond.memory_ids


def test_conditioning_summary_is_json_ready():
    import json

    cond = Conditioning("x", "p", tensors={"e": np.zeros((2, 4))}, masks=np.zeros((2, 3, 3)))
    summary = json.loads(json.dumps(cond.summary()))
    assert summary["tensors"] == {"e": [2, 4]} and summary["masks"] == [2, 3, 3]


def test_frame_helpers():
    floats = np.linspace(0, 1, 2 * 4 * 4 * 3).reshape(1, 2, 4, 4, 3)
    frames = to_uint8_frames(floats)
    assert frames.dtype == np.uint8 and frames.shape == (2, 4, 4, 3) and frames.max() == 255
    assert fit_frames(frames[:1], 5).shape[0] == 5  # a still is held
    assert fit_frames(np.arange(9)[:, None, None, None].repeat(3, -1).astype(np.uint8), 3)[:, 0, 0, 0].tolist() == [
        0,
        4,
        8,
    ]


def test_regions_default_left_to_right_and_honour_the_shot():
    result = sample_result(cast=("Bram", "Aria"))
    from generators.base import ordered_characters

    hits = ordered_characters(result)
    assert [h.entity.name for h in hits] == ["Bram", "Aria"]  # explicit cast order wins over rank
    assert regions_for(ShotSpec("x"), hits) == auto_regions(2) == [(0, 0, 0.5, 1), (0.5, 0, 1, 1)]
    boxes = regions_for(ShotSpec("x", regions={"aria": (0.1, 0.2, 0.4, 0.9)}), hits)
    assert boxes[1] == (0.1, 0.2, 0.4, 0.9) and boxes[0] == (0, 0, 0.5, 1)
    masks = region_masks(boxes, 10, 10)
    assert masks.shape == (2, 10, 10) and masks[0, :, :5].all() and not masks[0, :, 5:].any()


def test_face_crop_uses_the_face_box():
    from generators.testing import make_reference, pattern
    from memstore.schema import Entity

    ent = Entity(kind="character", name="Aria")
    ref = make_reference(ent, pattern(1, (200, 300)), face_box=[20, 20, 60, 60])
    crop = face_crop(ref)
    whole = face_crop(ref.model_copy(update={"face_box": None}))
    assert crop.height < 200 and whole.height == 200  # the face crop is tight, the fallback is the centre
    assert abs(crop.width / crop.height - 0.75) < 0.05 and abs(whole.width / whole.height - 0.75) < 0.05


def test_missing_diffusers_names_the_extra(monkeypatch):
    import importlib.util

    from generators.base import require_diffusers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"continuity\[diffusers\]"):
        require_diffusers()


def test_reference_without_image_bytes_is_a_clear_error():
    from generators.base import reference_image

    ref = sample_result().characters[0].references[0].model_copy(update={"image": None})
    with pytest.raises(InvalidInputError, match="has no image bytes"):
        reference_image(ref)
