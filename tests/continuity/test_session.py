"""StorySession: a story driven shot by shot by someone else's pipeline (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest

from continuity.session import SessionConfig, StorySession
from memstore.errors import InvalidInputError

SMALL = SessionConfig(width=64, height=48, fps=4)


def render(plan) -> np.ndarray:
    """A test double for someone's pipeline: the first reference of each hit, side by side."""
    frames = np.zeros((2, SMALL.height, SMALL.width, 3), np.uint8)
    images = [refs[0] for refs in plan.reference_images.values() if refs]
    for i, image in enumerate(images[:2]):
        tile = np.asarray(image.convert("RGB").resize((SMALL.width // 2, SMALL.height)))
        frames[:, :, i * SMALL.width // 2 : (i + 1) * SMALL.width // 2] = tile
    return frames


def test_plan_render_commit_and_memory(cast, tmp_path):
    session = StorySession(cast, "harbor", SMALL, out_dir=tmp_path / "out")
    first = session.plan("Aria walks onto the pier at the Harbor.")
    assert {h.entity.name for h in first.result.hits} == {"Aria", "Harbor"} and first.memory == []
    done = session.commit(first, render(first))
    assert done.keyframes and done.video is not None and done.video.exists() and done.provenance.exists()
    second = session.plan("She looks at the boats.", cut=False)  # a pronoun, a continuation
    names = {h.entity.name: h.reasons for h in second.result.hits}
    assert set(names) == {"Aria", "Harbor"}
    assert any("carried" in why or "she" in why.lower() for why in names["Aria"])
    assert second.memory and {f.shot for f, _ in second.memory} == {0}
    assert second.memory_frames[0].dtype == np.uint8
    session.commit(second, render(second))
    assert [r.shot_index for r in session.shots()] == [0, 1]
    assert session.provenance(1)["cut"] is False


def test_a_reopened_session_resumes_the_story(cast, tmp_path):
    first = StorySession(cast, "harbor", SMALL)
    plan = first.plan("Bram waits in the Forest.")
    first.commit(plan, render(plan))  # no out_dir: only keyframes and the shot record
    again = StorySession(cast, "harbor", SMALL)  # another process, later
    assert again.next_index == 1 and again.previous_hash == plan.input_hash
    follow = again.plan("He sharpens a blade.", cut=False)
    assert {h.entity.name for h in follow.result.hits} == {"Bram", "Forest"}
    assert follow.index == 1 and follow.memory
    assert again.reset(from_index=0) == 1 and again.next_index == 0 and cast.keyframes("harbor") == []


def test_commit_takes_an_mp4(cast, tmp_path):
    from continuity.video import write_mp4

    session = StorySession(cast, "mp4", SMALL, out_dir=tmp_path / "out")
    plan = session.plan("Aria at the Harbor.")
    write_mp4(tmp_path / "take.mp4", render(plan), 4)
    done = session.commit(plan, tmp_path / "take.mp4")
    assert done.keyframes and done.record.input_hash == plan.input_hash


def test_errors_are_one_line(cast):
    session = StorySession(cast, "errors", SMALL)
    with pytest.raises(InvalidInputError, match="no finished shot 3"):
        session.provenance(3)
    with pytest.raises(InvalidInputError, match="no out_dir"):
        session.paths(0)
    plan = session.plan("Aria at the Harbor.")
    with pytest.raises(InvalidInputError, match=r"end in \(H, W, 3\)"):
        session.commit(plan, np.zeros((2, 8, 8), np.uint8))
    assert session.shots() == []


@pytest.mark.slow
def test_a_story_through_a_pipeline_the_user_loaded(cast, tmp_path):
    """A diffusers script with its own loaded pipeline: plan gives ready call arguments
    (IP-Adapter image embeddings from the store's token cache), the user calls the pipe, commits."""
    pytest.importorskip("diffusers")
    import torch

    from generators.ip_adapter import HFImageEncoder, IPAdapterGenerator
    from generators.testing import save_adapter, tiny_clip_image_encoder, tiny_ip_adapter_state_dict, tiny_sd_pipeline
    from memstore.tokens import TokenCache

    torch.set_num_threads(2)
    pipe = tiny_sd_pipeline()  # the user's own pipeline, loaded their way
    save_adapter(tiny_ip_adapter_state_dict(pipe.unet), tmp_path / "ip")
    pipe.load_ip_adapter(
        str(tmp_path / "ip"), subfolder="", weight_name="ip-adapter.safetensors", image_encoder_folder=None
    )
    model, processor = tiny_clip_image_encoder()
    cache = TokenCache(cast)
    adapter = IPAdapterGenerator(
        pipe, encoder=HFImageEncoder(model, processor), token_cache=cache, num_inference_steps=2
    )
    session = StorySession(cast, "diffusers", SessionConfig(width=64, height=64, fps=4), adapter=adapter)
    for prompt, cut in [("Aria walks onto the pier at the Harbor.", True), ("She smiles.", False)]:
        plan = session.plan(prompt, cut=cut)
        args = plan.call_arguments
        assert args["prompt"] == plan.conditioning.prompt and "ip_adapter_image_embeds" in args
        out = pipe(**args, num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(plan.seed))
        session.commit(plan, out.images)
    assert cache.count() >= 1  # each reference encoded once, reused by the second shot
    assert [r.shot_index for r in session.shots()] == [0, 1]
    assert "Aria" in {h.entity.name for h in plan.result.hits}
