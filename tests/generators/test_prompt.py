"""Prompt enrichment: descriptions after mentions, bounded length, any diffusers pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from generators import ShotSpec
from generators.prompt import PromptGenerator, enrich_prompt
from generators.testing import mean_abs, sample_result


def test_descriptions_follow_first_mentions_and_unmentioned_entities_are_appended():
    result = sample_result("Aria's blade flashes as she faces the sea")
    text = enrich_prompt(result.query.prompt, result.hits, char_budget=1000)
    assert text.startswith("Aria's (a red-haired knight with a scar across her cheek) blade flashes")
    assert "With Bram (a tall old fisherman in a yellow oilskin coat)" in text
    assert "Setting: Harbor (a foggy stone harbor at dusk)" in text


def test_budget_shortens_then_drops_lowest_ranked_but_never_cuts_the_prompt():
    result = sample_result("Aria and Bram argue")
    full = enrich_prompt("Aria and Bram argue", result.hits, char_budget=1000)
    short = enrich_prompt("Aria and Bram argue", result.hits, char_budget=120)
    assert len(short) <= 120 < len(full)
    assert "Aria (a red-haired knight with a scar across her cheek)" in short  # the top hit keeps the most
    assert enrich_prompt("Aria and Bram argue", result.hits, char_budget=5) == "Aria and Bram argue"


def test_token_budget_uses_the_tokenizer():
    result = sample_result("Aria and Bram argue")

    def words(text):
        return len(text.split())

    text = enrich_prompt("Aria and Bram argue", result.hits, token_count=words, max_tokens=14, char_budget=10_000)
    assert words(text) <= 14 and text.startswith("Aria (")


@pytest.fixture(scope="module")
def sd(torch_threads):
    from generators.testing import tiny_sd_pipeline

    return tiny_sd_pipeline()


def test_generate_is_deterministic_and_prompts_matter(sd):
    gen = PromptGenerator(sd, num_inference_steps=2, char_budget=300, max_tokens=77)
    shot = ShotSpec("Aria and Bram argue", num_frames=2, width=32, height=32)
    result = sample_result("Aria and Bram argue")
    cond = gen.prepare(shot, result)
    assert cond.prompt != shot.prompt and cond.prompt.startswith("Aria (")
    assert len(sd.tokenizer(cond.prompt)["input_ids"]) <= 77  # within CLIP's window
    a, b = gen.generate(shot, cond, 4), gen.generate(shot, cond, 4)
    assert a.frames.shape == (2, 32, 32, 3) and np.array_equal(a.frames, b.frames)
    other = sample_result("Aria and Bram argue", characters=[("Aria", "a bald giant in blue robes", 1)])
    assert mean_abs(gen.run(shot, other, 4).frames, a.frames) > 0.5


def test_no_descriptions_equals_the_plain_pipeline(sd):
    import torch

    gen = PromptGenerator(sd, num_inference_steps=2, kinds=())
    shot = ShotSpec("Aria and Bram argue", num_frames=1, width=32, height=32)
    out = gen.run(shot, sample_result(), 4)
    plain = sd(
        prompt=shot.prompt,
        height=32,
        width=32,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(4),
        output_type="np",
    ).images
    assert np.array_equal(out.frames[0], np.clip(np.rint(plain[0] * 255), 0, 255).astype(np.uint8))


def test_from_pretrained_without_weights_says_where_it_looked(tmp_path, torch_threads):
    from memstore.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="not found: looked at"):
        PromptGenerator.from_pretrained(str(tmp_path / "no-such-model"))
